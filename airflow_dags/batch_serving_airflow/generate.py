"""Writes the DAG file of every job file that has none: ``<stem>_dags.py`` beside this package.

    .venv-airflow/bin/python airflow_dags/batch_serving_airflow/generate.py [--check]

One DAG file per job file keeps a broken job file's import error to its own DAGs. ``--check``
writes nothing and exits 1 naming the job files without a DAG file (and DAG files without a
job file), for CI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parents[1]
SUFFIX = "_dags.py"
TEMPLATE = '''"""Airflow DAGs score_<job> (nightly) and backfill_<job> of job file {name}.

One DAG file per job file, so a broken job file hides only its own DAGs. Written by
batch_serving_airflow/generate.py; the DAGs are built in batch_serving_airflow/dags.py.
"""

from batch_serving_airflow.dags import job_dags

globals().update(job_dags("{name}"))
'''


def dag_file(job_file: Path, dags_folder: Path = DAGS_FOLDER) -> Path:
    return dags_folder / f"{job_file.stem}{SUFFIX}"


def missing(conf_dir: Path, dags_folder: Path = DAGS_FOLDER) -> list[Path]:
    """Job files (``*.yaml``) without their DAG file."""
    jobs = sorted(conf_dir.glob("*.yaml"))
    return [job for job in jobs if not dag_file(job, dags_folder).exists()]


def orphans(conf_dir: Path, dags_folder: Path = DAGS_FOLDER) -> list[Path]:
    """DAG files whose job file is gone (each would be an import error)."""
    stems = {job.stem for job in conf_dir.glob("*.yaml")}
    dag_files = sorted(dags_folder.glob(f"*{SUFFIX}"))
    return [f for f in dag_files if f.name.removesuffix(SUFFIX) not in stems]


def write(job_file: Path, dags_folder: Path = DAGS_FOLDER) -> Path:
    target = dag_file(job_file, dags_folder)
    target.write_text(TEMPLATE.format(name=job_file.name))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf-dir", type=Path, default=DAGS_FOLDER.parent / "conf" / "jobs")
    parser.add_argument("--dags-folder", type=Path, default=DAGS_FOLDER)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    todo = missing(args.conf_dir, args.dags_folder)
    stale = orphans(args.conf_dir, args.dags_folder)
    if args.check:
        for job in todo:
            print(f"{job} has no DAG file {dag_file(job, args.dags_folder)}", file=sys.stderr)
        for orphan in stale:
            print(f"{orphan} has no job file in {args.conf_dir}", file=sys.stderr)
        return 1 if todo or stale else 0
    for job in todo:
        print(f"wrote {write(job, args.dags_folder)}")
    for orphan in stale:
        print(f"{orphan} has no job file in {args.conf_dir}: delete it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

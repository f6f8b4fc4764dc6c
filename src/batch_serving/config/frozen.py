"""The base of every config section: immutable, and refusing keys it does not know (a typo
must not silently become a default); field docstrings are the descriptions."""

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable, and refuses keys it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

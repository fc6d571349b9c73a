"""Hardware profiles (YAML, validated) and cycle-approximate cost models."""

from qsim.hw.schema import FAMILIES, PRECISIONS, ProfileError, json_schema, validate_profile_dict

__all__ = ["FAMILIES", "PRECISIONS", "ProfileError", "json_schema", "validate_profile_dict"]

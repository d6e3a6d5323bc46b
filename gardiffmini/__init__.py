"""gardiffmini: GarDiff (ECCV 2024) rebuilt small, the library behind the book."""

from gardiffmini.profiles import PROFILES, Profile, get_profile

__all__ = ["PROFILES", "Profile", "get_profile"]
__version__ = "0.1.0"

"""A user's profile: the read model decisions match against (`model`: `Profile`, re-exported here),
its state and the arithmetic on it (`state`, the Python reference), how a worker counts into it
(`counting`: compiled or the reference), its Redis side (`store`, with the guard function in
`store.lua`), and the same without Redis for `tailor simulate` (`offline`).
"""

from tailor.core.profile.model import SEPARATOR, Profile, Session, counter

__all__ = ["SEPARATOR", "Profile", "Session", "counter"]

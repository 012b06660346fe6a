"""Pure helpers of lib/locks.py: the names of MySQL named locks."""
from lib.locks import MAX_LOCK_NAME, lock_name


def test_a_lock_is_named_after_its_purpose_and_database():
    assert lock_name("financial", "fetch") == "financial-fetch:financial"
    assert lock_name("financial", "migrate") == "financial-migrate:financial"


def test_long_database_names_fit_and_never_share_a_lock():
    first, second = "a" * 63 + "1", "a" * 63 + "2"  # MySQL allows 64 characters
    names = {lock_name(first, "fetch"), lock_name(second, "fetch"), lock_name(first, "migrate")}
    assert len(names) == 3
    assert all(len(name) == MAX_LOCK_NAME for name in names)
    assert all(name.startswith("financial-") for name in names)

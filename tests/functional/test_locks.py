"""The per-database run lock, on every backend: one holder, waiting, timeout, stop."""
from contextlib import ExitStack

import portalocker
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from app.extensions import db
from lib.locks import LockFileError, LockTimeout, LockWaitStopped, database_lock, lock_name
from tests.helpers import HANG_GUARD_SECONDS, ManualClock, wait_for


@pytest.fixture
def engines(app):
    """Two engines on the test database, as two processes would have."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    other = create_engine(url, **app.config["SQLALCHEMY_ENGINE_OPTIONS"])
    with app.app_context():
        yield db.engine, other
    other.dispose()


def test_a_second_holder_waits_then_times_out(engines):
    first, second = engines
    fake, waits = ManualClock(start=0.0), []
    with database_lock(first, "fetch", 1):
        with pytest.raises(LockTimeout, match="not granted within 3s"):
            with database_lock(second, "fetch", 3, on_wait=lambda: waits.append(fake.now),
                               clock=fake, sleep=fake.sleep):
                pytest.fail("the lock was granted twice")
    assert waits == [0.0], "told once, when the wait began"
    assert fake.now >= 3 and fake.sleeps >= 6


def test_the_lock_is_free_once_the_block_ends(engines):
    first, second = engines
    with database_lock(first, "fetch", 1):
        pass
    waits = []
    with database_lock(second, "fetch", 0, on_wait=lambda: waits.append(1)):
        pass
    assert waits == []


def test_a_lock_is_freed_when_its_block_raises(engines):
    first, second = engines
    with pytest.raises(RuntimeError):
        with database_lock(first, "fetch", 1):
            raise RuntimeError("the run broke")
    with database_lock(second, "fetch", 0):
        pass


def test_a_stop_request_ends_the_wait(engines):
    first, second = engines
    fake = ManualClock(start=0.0)
    with database_lock(first, "fetch", 1):
        with pytest.raises(LockWaitStopped):
            with database_lock(second, "fetch", 300, should_stop=lambda: fake.sleeps >= 2,
                               clock=fake, sleep=fake.sleep):
                pytest.fail("the lock was granted twice")
    assert fake.now < 300


def test_a_stop_asked_while_the_lock_comes_free_ends_the_wait_without_the_lock(engines):
    """The holder lets go during the waiter's last sleep, as its stop is asked: no run starts."""
    first, second = engines
    stop = []
    with ExitStack() as holder:
        holder.enter_context(database_lock(first, "fetch", 1))

        def holder_ends_as_the_stop_comes(seconds: float) -> None:
            holder.close()
            stop.append(seconds)

        with pytest.raises(LockWaitStopped):
            with database_lock(second, "fetch", 300, should_stop=lambda: bool(stop),
                               sleep=holder_ends_as_the_stop_comes):
                pytest.fail("a run stopped while waiting took the lock")
    with database_lock(first, "fetch", 0):  # given back: free at the first try
        pass


def test_other_purposes_do_not_wait(engines):
    first, second = engines
    waits, granted = [], []
    with database_lock(first, "fetch", 1):
        with database_lock(second, "other", 0, on_wait=lambda: waits.append(1)):
            granted.append("other")
    assert (granted, waits) == (["other"], []), "granted at the first try"


def test_each_sqlite_database_has_its_own_lock(tmp_path):
    one = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    two = create_engine(f"sqlite:///{tmp_path / 'two.db'}")
    with database_lock(one, "fetch", 1):
        with database_lock(two, "fetch", 0):
            pass
    assert (tmp_path / "one.db.fetch-lock").exists()
    one.dispose()
    two.dispose()


def test_a_database_reached_through_a_link_has_the_one_lock_beside_its_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "financial.db").symlink_to(tmp_path / "data" / "financial.db")
    direct = create_engine(f"sqlite:///{tmp_path / 'data' / 'financial.db'}")
    linked = create_engine(f"sqlite:///{tmp_path / 'links' / 'financial.db'}")
    relative = create_engine(f"sqlite:///{tmp_path / 'links' / '..' / 'data' / 'financial.db'}")
    with database_lock(direct, "fetch", 1):
        for other in (linked, relative):
            with pytest.raises(LockTimeout):
                with database_lock(other, "fetch", 0):
                    pytest.fail("one database, locked twice")
    for engine in (direct, linked, relative):
        engine.dispose()


def test_a_link_is_also_locked_where_earlier_releases_lock_it(tmp_path):
    """Beside the link: a migration through it waits for an earlier release's run."""
    (tmp_path / "financial.db").touch()
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "financial.db").symlink_to(tmp_path / "financial.db")
    linked = create_engine(f"sqlite:///{tmp_path / 'links' / 'financial.db'}")
    with open(tmp_path / "links" / "financial.db.fetch-lock", "a") as earlier_release:
        portalocker.lock(earlier_release, portalocker.LockFlags.EXCLUSIVE)
        with pytest.raises(LockTimeout):
            with database_lock(linked, "fetch", 0):
                pytest.fail("locked beside the file only")
        portalocker.unlock(earlier_release)
    with database_lock(linked, "fetch", 0):
        pass
    linked.dispose()


def test_a_path_written_relative_to_the_folder_takes_its_one_lock(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = create_engine("sqlite:///data/financial.db")
    with database_lock(relative, "fetch", 0):
        assert sorted(path.name for path in (tmp_path / "data").iterdir()) == [
            "financial.db.fetch-lock"]
    relative.dispose()


def test_a_loop_of_links_gets_its_lock_file_for_sqlite_to_refuse_the_database(tmp_path):
    (tmp_path / "a.db").symlink_to(tmp_path / "b.db")
    (tmp_path / "b.db").symlink_to(tmp_path / "a.db")
    looped = create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with database_lock(looped, "fetch", 0):
        assert (tmp_path / "a.db.fetch-lock").exists()
    looped.dispose()


def test_a_lock_file_that_cannot_be_opened_is_one_clear_error(tmp_path):
    """A read-only or full disk refuses the file; a folder in its place refuses it alike."""
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    (tmp_path / "one.db.fetch-lock").mkdir()
    with pytest.raises(LockFileError) as raised:
        with database_lock(engine, "fetch", 1):
            pytest.fail("granted without its file")
    assert str(raised.value) == (f"the lock file {tmp_path / 'one.db.fetch-lock'} cannot be "
                                 "opened (Is a directory)")
    engine.dispose()


@pytest.fixture
def idle_dropping(mysql_database_url):
    """An engine on a server that drops connections idle for 1 s, and another engine."""
    dropping = create_engine(mysql_database_url,
                             connect_args={"init_command": "SET SESSION wait_timeout = 1"})
    other = create_engine(mysql_database_url)
    yield dropping, other
    dropping.dispose()
    other.dispose()


def idled_past(engine, connection_id: int, seconds: int) -> bool:
    """Tell whether the server says connection ``connection_id`` idled past ``seconds``, or is gone.

    The server counts a connection's idle time in whole seconds.
    """
    with engine.connect() as connection:
        idle = connection.scalar(text("SELECT TIME FROM information_schema.PROCESSLIST "
                                      "WHERE ID = :id"), {"id": connection_id})
    return idle is None or idle > seconds


@pytest.mark.mysql
def test_a_named_lock_outlives_the_servers_idle_timeout(idle_dropping):
    dropping, other = idle_dropping
    name = lock_name(make_url(str(dropping.url)).database or "", "fetch")
    with database_lock(dropping, "fetch", 1):
        with other.connect() as connection:
            holder_id = connection.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
        # A dropped idle connection shows only after idling past the timeout (1 s):
        # the server's own count of the holder's idle seconds says when it has.
        wait_for(lambda: idled_past(other, holder_id, 1),
                 "the holder to idle past the idle timeout, or be dropped", HANG_GUARD_SECONDS)
        with pytest.raises(LockTimeout):
            with database_lock(other, "fetch", 0):
                pytest.fail("the lock was granted twice: the idle holder was dropped")
    with dropping.connect() as connection:
        assert connection.scalar(text("SELECT @@SESSION.wait_timeout")) == 1, (
            "the lock's long idle timeout must not come back from the pool")


@pytest.mark.mysql
def test_a_lock_whose_connection_was_lost_ends_its_block_quietly(idle_dropping, caplog):
    """The server frees a lost connection's lock; the run's own outcome must not be masked."""
    holder, other = idle_dropping
    name = lock_name(make_url(str(holder.url)).database or "", "fetch")
    with database_lock(holder, "fetch", 1):
        with other.connect() as connection:
            holder_id = connection.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
            connection.execute(text(f"KILL CONNECTION {int(holder_id)}"))
    assert "lock's connection was lost before its release (OperationalError)" in caplog.text
    with database_lock(other, "fetch", 0):
        pass


def kill_the_holder(holder, other, purpose: str = "fetch") -> None:
    """Kill the connection holding ``holder``'s lock, as a server restart would end it."""
    name = lock_name(make_url(str(holder.url)).database or "", purpose)
    with other.connect() as connection:
        holder_id = connection.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
        connection.execute(text(f"KILL CONNECTION {int(holder_id)}"))


@pytest.mark.mysql
def test_a_named_lock_lost_with_its_connection_is_taken_again_while_free(idle_dropping, caplog):
    holder, other = idle_dropping
    with database_lock(holder, "fetch", 1) as still_held:
        assert still_held()
        kill_the_holder(holder, other)
        assert still_held(), "free: taken again"
        assert "lock's connection was lost (OperationalError); taking the lock again" in (
            caplog.text)
        with pytest.raises(LockTimeout):
            with database_lock(other, "fetch", 0):
                pytest.fail("the lock was granted twice")
    with database_lock(other, "fetch", 0):
        pass


@pytest.mark.mysql
def test_a_named_lock_lost_with_its_connection_to_another_holder_is_not_held(idle_dropping):
    holder, other = idle_dropping
    with database_lock(holder, "fetch", 1) as still_held:
        kill_the_holder(holder, other)
        with database_lock(other, "fetch", 0):
            assert not still_held()
    with database_lock(other, "fetch", 0):
        pass


def test_a_lock_file_is_held_as_long_as_its_block(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")
    with database_lock(engine, "fetch", 1) as still_held:
        assert still_held()
    engine.dispose()

"""Accounts: names, argon2id hashes, logins with back-off, API keys stored hashed, limits, the legacy
password, the CLI's users and keys commands, and a data folder from before accounts handed to the first admin."""
from __future__ import annotations

import json
import sqlite3

import pytest

from llmos_core.__main__ import main
from llmos_core.accounts import (LOCAL_ADMIN, Accounts, Backoff, KeyNotFound, Limits, LoginRefused, LoginThrottled,
                                 NotAllowed, User, UserNotFound, adopt_local, check_user_name, user_home)
from llmos_core.conversations import Conversations
from llmos_core.errors import InvalidInput
from llmos_core.store import SCHEMA, Store

PASSWORD = "correct horse"


@pytest.fixture
def accounts(tmp_path):
    return Accounts(Store(tmp_path / "llmos.db"))


@pytest.mark.parametrize("name", ["alice", "bob_2", "a.b-c", "0x"])
def test_good_names(name):
    assert check_user_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "Alice", "a/b", "../x", "a b", "x" * 33, None, "é"])
def test_names_that_could_be_paths_or_confusing_are_refused(name):
    with pytest.raises(InvalidInput):
        check_user_name(name)


def test_passwords_are_argon2id_hashes_and_logins_check_them(accounts):
    user = accounts.add_user("alice", PASSWORD)
    assert user == User(user.id, "alice", "user") and not user.is_admin and LOCAL_ADMIN.is_admin
    stored = accounts.store.query("SELECT hash FROM users WHERE name = 'alice'")[0]["hash"]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert accounts.authenticate("alice", PASSWORD, address="10.0.0.1") == user
    with pytest.raises(LoginRefused) as wrong_password:
        accounts.authenticate("alice", "wrong one", address="10.0.0.1")
    with pytest.raises(LoginRefused) as wrong_name:
        accounts.authenticate("nobody", PASSWORD, address="10.0.0.1")
    assert str(wrong_password.value) == str(wrong_name.value)          # one message for both
    assert [e["kind"] for e in accounts.store.events(kinds=("login_failed",))] == ["login_failed"] * 2
    with pytest.raises(InvalidInput):
        accounts.add_user("alice", PASSWORD)                              # names are unique
    with pytest.raises(InvalidInput):
        accounts.add_user("carol", "short")
    accounts.set_password("alice", "another password")
    assert accounts.authenticate("alice", "another password", address="10.0.0.1") == user


def test_guessing_backs_off_per_address_and_per_account():
    now = [1000.0]
    backoff = Backoff(free=3, base=1.0, cap=8.0, clock=lambda: now[0])
    for _ in range(2):
        assert backoff.fail("address:a", "user:x") == 0
    assert backoff.fail("address:a", "user:x") == 1.0                  # the third failure: a wait
    assert backoff.wait_s("address:b", "user:x") == 1.0                # the account waits from any address
    assert backoff.wait_s("address:a", "user:y") == 1.0                # the address waits for any account
    assert backoff.fail("address:a", "user:x") == 2.0 and backoff.fail("address:a", "user:x") == 4.0
    for _ in range(5):
        backoff.fail("address:a", "user:x")
    assert backoff.wait_s("address:a") == 8.0                          # capped
    now[0] += 9
    assert backoff.wait_s("address:a", "user:x") == 0
    backoff.succeed("address:a", "user:x")
    assert backoff.fail("address:a", "user:x") == 0


def test_authenticate_refuses_while_throttled_without_checking(accounts):
    accounts.add_user("alice", PASSWORD)
    accounts.backoff = Backoff(free=2, base=30.0)
    for _ in range(2):
        with pytest.raises(LoginRefused):
            accounts.authenticate("alice", "guess", address="1.2.3.4")
    with pytest.raises(LoginThrottled) as throttled:
        accounts.authenticate("alice", PASSWORD, address="5.6.7.8")     # the right password waits too
    assert 29 < throttled.value.retry_after_s <= 30 and "try again" in str(throttled.value)


def test_keys_are_shown_once_stored_hashed_and_revoked_by_owner_or_admin(accounts):
    alice, bob = accounts.add_user("alice", PASSWORD), accounts.add_user("bob", PASSWORD)
    admin = accounts.add_user("root", PASSWORD, role="admin")
    key = accounts.create_key("alice")
    assert key.startswith("llmos-") and len(key) > 40
    assert key not in json.dumps(accounts.store.query("SELECT * FROM api_keys"))
    assert accounts.user_for_key(key) == alice and accounts.user_for_key(key + "x") is None
    [row] = accounts.list_keys(alice)
    assert row["user"] == "alice" and accounts.list_keys(bob) == [] and len(accounts.list_keys(None)) == 1
    with pytest.raises(KeyNotFound):
        accounts.revoke_key(row["id"], by=bob)                         # someone else's key reads as missing
    accounts.revoke_key(row["id"], by=admin)
    assert accounts.user_for_key(key) is None
    accounts.api_key = "the-env-key"
    assert accounts.user_for_key("the-env-key") == admin               # LLMOS_API_KEY: the first admin


def test_limits_default_for_users_none_for_admins_and_set_by_name(accounts):
    alice = accounts.add_user("alice", PASSWORD)
    admin = accounts.add_user("root", PASSWORD, role="admin")
    assert accounts.limits_for(admin) == Limits() and accounts.limits_for(alice).concurrent_generations == 4
    changed = accounts.set_limits("alice", concurrent_generations=1, storage_bytes=1000)
    assert changed == accounts.limits_for(alice) and changed.concurrent_generations == 1 and changed.queued_jobs == 8
    assert accounts.set_limits("alice", concurrent_generations=None).concurrent_generations == 4
    with pytest.raises(InvalidInput):
        accounts.set_limits("alice", queued_jobs=-1)
    with pytest.raises(UserNotFound):
        accounts.set_limits("nobody", queued_jobs=1)


def test_the_legacy_password_is_one_admin_account(accounts, monkeypatch):
    monkeypatch.setenv("LLMOS_WEB_PASSWORD", "old shared secret")
    assert not accounts.any_users()
    user = accounts.authenticate("admin", "old shared secret", address="127.0.0.1")
    assert user.name == "admin" and user.is_admin and accounts.any_users()
    with pytest.raises(LoginRefused):
        accounts.authenticate("admin", "not it", address="127.0.0.1")
    monkeypatch.setenv("LLMOS_WEB_PASSWORD", "")
    with pytest.raises(LoginRefused):                                  # unset: the account cannot log in
        accounts.authenticate("admin", "old shared secret", address="127.0.0.1")


def test_the_last_admin_cannot_be_removed_while_users_remain(accounts):
    accounts.add_user("root", PASSWORD, role="admin")
    accounts.add_user("alice", PASSWORD)
    with pytest.raises(NotAllowed):
        accounts.remove_user("root")
    accounts.remove_user("alice")
    with pytest.raises(UserNotFound):
        accounts.user_by_name("alice")


def test_a_data_folder_from_before_accounts_goes_to_the_first_admin(tmp_path):
    home = tmp_path / "home"
    (home / "translate").mkdir(parents=True)
    (home / "translate" / "glossary.json").write_text('{"en>de": {"engine": "Motor"}}')
    old = sqlite3.connect(home / "llmos.db")         # the schema as it was: no owner column anywhere
    old.executescript(SCHEMA)
    old.execute("INSERT INTO conversations (title, model, created, updated) VALUES ('old chat', 'm', 1, 1)")
    old.commit()
    old.close()
    store = Store(home / "llmos.db")
    assert store.query("SELECT owner FROM conversations") == [{"owner": 0}]   # the local admin's until...
    accounts = Accounts(store, on_first_admin=lambda admin: adopt_local(store, home, admin))
    accounts.add_user("alice", PASSWORD)                                       # a plain user takes nothing
    root = accounts.add_user("root", PASSWORD, role="admin")
    conversations = Conversations(store)
    assert [c["title"] for c in conversations.list(root, mine=True)] == ["old chat"]
    alice = accounts.user_by_name("alice")
    assert conversations.list(alice) == []
    assert (user_home(home, root) / "translate" / "glossary.json").is_file()
    assert not (home / "translate" / "glossary.json").exists()
    accounts.add_user("second", PASSWORD, role="admin")                        # only the first admin adopts
    assert conversations.list(root, mine=True)[0]["owner"] == root.id


def test_the_cli_manages_users_and_keys_and_acts_as_a_user(home, tmp_path, capsys):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    assert main(["users", "add", "root", "--role", "admin", "--password-file", str(secret)]) == 0
    assert main(["users", "add", "bob", "--password-file", str(secret)]) == 0
    assert main(["users", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert [u["name"] for u in json.loads(out[out.index("["):])] == ["bob", "root"]
    assert main(["keys", "create", "--user", "bob"]) == 0
    key = capsys.readouterr().out.splitlines()[0]
    assert main(["--as", "bob", "keys", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["prefix"] == key[:12]
    assert main(["--as", "bob", "users", "add", "eve", "--password-file", str(secret)]) == 1
    assert "not an admin" in capsys.readouterr().err
    assert main(["--as", "nobody", "jobs", "list"]) == 1
    assert main(["users", "limits", "bob", "--queued-jobs", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["queued_jobs"] == 2
    assert main(["users", "remove", "bob"]) == 0
    store = Store(home / "llmos.db")
    assert [u["name"] for u in Accounts(store).list_users()] == ["root"]
    assert Accounts(store).authenticate("root", PASSWORD, address="cli") .name == "root"

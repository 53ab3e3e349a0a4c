"""The pure parts of the content API's Redis Cluster routing (tailor_api.resp_cluster): hash slots,
redirections, the slot map, and that every call of a decision stays in one user's slot."""

from __future__ import annotations

import time

import pytest
import redis.crc
import sample
from tailor_api import resp, resp_cluster, user_context

from tailor.core import redis_target
from tailor.core.decision import caps, engine, keys
from tailor.core.profile import traits
from tailor.core.rules import ruleset


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        # CRC16/XMODEM's check value: CRC16("123456789") = 0x31C3 (the cluster spec's reference).
        ("123456789", 0x31C3),
        # What `redis-cli CLUSTER KEYSLOT` answers.
        ("foo", 12182),
        ("hello", 866),
        ("somekey", 11058),
        # The tag alone is hashed, wherever it is in the key...
        ("{foo}.bar", 12182),
        ("tailor:shop/main:{foo}:api:rr", 12182),
        # ... the first tag only.
        ("x{foo}{hello}", 12182),
        (b"{user1000}.following", resp_cluster.key_slot("{user1000}.followers")),
    ],
)
def test_a_keys_slot_is_crc16_of_its_hash_tag_modulo_16384(key: str | bytes, slot: int) -> None:
    assert resp_cluster.key_slot(key) == slot


def test_an_empty_tag_hashes_the_whole_key_and_the_first_closing_brace_ends_the_tag() -> None:
    assert resp_cluster.key_slot("foo{}{bar}") != resp_cluster.key_slot("bar")
    assert resp_cluster.key_slot("foo{{bar}}zap") == resp_cluster.key_slot("{bar")


def test_the_slot_of_text_keys_is_the_reference_implementations_slot() -> None:
    """key_slot finds the tag in the text (and remembers it); redis-py's key_slot, on the bytes, is
    the oracle."""
    keys_ = ["", "{", "}", "{}", "}{", "a{b", "a}b{c}", "{{a}}", "x{}{y}", "{ü}", "schüh{ß}x", "a{b}c{d}"]
    keys_ += ["tailor:shop/main:{user-1}:api:s:s1", "tailor:{shop/main}:stats:promo", "rl:u:alice:123"]
    keys_ += [f"k{n}:{{u{n % 97}}}" for n in range(300)]
    for key in keys_:
        assert resp_cluster.key_slot(key) == redis.crc.key_slot(key.encode()), key
        assert resp_cluster.key_slot(key) == resp_cluster.key_slot(key.encode()), key


def test_a_commands_slot_is_its_first_keys_and_scripts_name_theirs_after_the_count() -> None:
    assert resp_cluster.command_slot(("HGETALL", "{foo}:s")) == 12182
    assert resp_cluster.command_slot(("EVALSHA", "abc", 2, "{hello}:a", "{hello}:b", "x")) == 866
    assert resp_cluster.command_slot(("EVAL", "return 1", 0)) is None
    assert resp_cluster.command_slot(("PING",)) is None
    assert resp_cluster.command_slot(("CLUSTER", "SLOTS")) is None
    assert resp_cluster.command_keys(("EVALSHA", "abc", 2, "k1", "k2", "arg")) == ("k1", "k2")


def test_moved_and_ask_replies_are_parsed_and_other_errors_are_not_redirections() -> None:
    moved = resp_cluster.parse_redirect(resp.ReplyError("MOVED 3999 10.0.0.7:6381"))
    assert moved == resp_cluster.Redirect("MOVED", 3999, ("10.0.0.7", 6381))
    ask = resp_cluster.parse_redirect(resp.ReplyError("ASK 12182 redis-2.redis:6379"))
    assert ask == resp_cluster.Redirect("ASK", 12182, ("redis-2.redis", 6379))
    assert resp_cluster.parse_redirect(resp.ReplyError("MOVED 1 ::1:7000")).node == ("::1", 7000)  # type: ignore[union-attr]
    # Redis 7 leaves the host out when it knows no endpoint: the node that answered is meant.
    assert resp_cluster.parse_redirect(resp.ReplyError("MOVED 5 :7001")) == resp_cluster.Redirect(
        "MOVED", 5, ("", 7001)
    )
    assert resp_cluster.parse_redirect(resp.ReplyError("WRONGTYPE Operation against a key")) is None
    assert resp_cluster.parse_redirect(resp.ReplyError("TRYAGAIN Multiple keys request")) is None
    assert resp_cluster.parse_redirect(b"MOVED 1 a:1") is None  # a value, not an error reply


def test_the_slot_map_names_each_slots_primary_and_every_node_to_ask_next_time() -> None:
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 10922, [b"?", 7001, b"id2"], [b"10.0.0.5", 7004, b"id5"]],
        [12000, 16383, [b"", 7002, b"id3"]],  # 10923-11999 served by no one (a failed primary)
    ]
    owners, known = resp_cluster.build_slot_map(reply, "seed.example")
    assert len(owners) == 16384
    assert owners[0] == owners[5460] == ("10.0.0.1", 7000)
    assert owners[5461] == owners[10922] == ("seed.example", 7001)
    assert owners[10923] is None
    assert owners[11999] is None
    assert owners[12000] == owners[16383] == ("seed.example", 7002)
    assert known == [
        ("10.0.0.1", 7000), ("seed.example", 7001), ("seed.example", 7002),
        ("10.0.0.4", 7003), ("10.0.0.5", 7004),
    ]  # fmt: skip


def every_call_of_a_user(user: str) -> list[resp.Command]:
    """What the content API sends for one user: the decision's read, the caps script, the writes
    sent without waiting, feedback's once-key and notInterested."""
    cap = ruleset.FrequencyCap(per_session=2, per_user_count=3, per_user_window_seconds=60)
    published = sample.build(
        [sample.html_variant("d", "hero", fallback=True), sample.html_variant("p", "hero"),
         sample.html_variant("q", "hero")],
        [ruleset.Rule(name="p", slot="hero", variants=("p",), frequency_cap=cap),
         ruleset.Rule(name="q", slot="hero", variants=("q",), strategy="roundRobin", priority=5,
                      frequency_cap=ruleset.FrequencyCap(per_user_count=1, per_user_window_seconds=60))],
    )  # fmt: skip
    built = engine.load(published)
    plan = built.slots["hero"]
    now = time.time()
    read = user_context.ContextRead(built, built.profile_reader, user, "s1", [plan], now)
    rules = {rule.name: rule for rule in plan.rules}
    variant = {v.name: v for rule in plan.rules for v in rule.variants}
    confirm = caps.confirm_command(
        built.stack,
        user,
        "s1",
        [("hero", [(rules["p"], variant["p"]), (rules["q"], variant["q"])])],
        now,
        1800,
    )
    context = read.parse([None, [], [], [], 0, 0], built.profile_reader)
    suppression = keys.suppression_key(built.stack, user)
    return [
        *read.commands,
        confirm,
        caps.with_source(confirm),
        *user_context.memory_writes(built, context, "hero", "p", "p"),
        *user_context.round_robin_writes(built, user, "q"),
        ("SET", f"{keys.api_prefix(built.stack, user)}fb:r:s1:p:click", 1, "NX", "EX", 60),
        ("ZADD", suppression, now + 60, "v:p"),
        traits.read_command(built.stack, user),
        traits.write_command(built.stack, user, {}, {}, now, now),
    ]


@pytest.mark.parametrize("user", ["alice", "u-42", "shopper@example.com"])
def test_every_call_the_api_makes_for_a_user_names_keys_of_that_users_slot_only(user: str) -> None:
    """One slot per user: a decision is one round trip to one node, and the caps script (several keys)
    never meets CROSSSLOT."""
    calls = every_call_of_a_user(user)
    slots = {resp_cluster.key_slot(key) for command in calls for key in resp_cluster.command_keys(command)}
    assert slots == {resp_cluster.key_slot("{" + user + "}")}
    assert any(len(resp_cluster.command_keys(command)) > 1 for command in calls)  # the caps script's keys


def test_a_pipeline_goes_to_one_node_only_when_every_key_is_served_there() -> None:
    """The routing shortcut (keys under the first key's tag are not hashed again) against slots."""
    connection = resp_cluster.ClusterConnection(redis_target.RedisTarget.parse("redis://127.0.0.1:7000/0"))
    reply = [[0, 8191, [b"10.0.0.1", 7000]], [8192, 16383, [b"10.0.0.2", 7001]]]
    connection._owners, connection._known = resp_cluster.build_slot_map(reply, "127.0.0.1")
    one = ("10.0.0.1", 7000) if resp_cluster.key_slot("{alice}") < 8192 else ("10.0.0.2", 7001)
    alice = [
        ("HGETALL", "t:{alice}:s"),
        ("ZCOUNT", "t:{alice}:cap", 0, "+inf"),
        ("EVALSHA", "x", 1, "t:{alice}:c"),
    ]
    assert connection._single_node(alice) == one
    assert connection._single_node([("PING",), *alice]) in (one, ("10.0.0.1", 7000))
    other = next(
        u for u in (f"u{n}" for n in range(100)) if connection.owner(resp_cluster.key_slot(u)) != one
    )
    assert connection._single_node([*alice, ("GET", f"t:{{{other}}}:x")]) is None
    # Another tag in the same slot, or a key without a tag that hashes there, still goes to that node.
    same = next(
        u
        for u in (f"v{n}" for n in range(100_000))
        if resp_cluster.key_slot(u) == resp_cluster.key_slot("alice")
    )
    assert connection._single_node([*alice, ("GET", same), ("GET", f"z{{{same}}}")]) == one
    assert resp_cluster.tag_prefix("t:{alice}:s") == "t:{alice}"
    assert resp_cluster.tag_prefix("{alice") is None
    assert resp_cluster.tag_prefix("t:{}{alice}") is None  # `{}` is no tag: the whole key is hashed


def test_the_routing_shortcut_agrees_with_routing_every_command_by_its_own_slot() -> None:
    """_single_node (the first key's tag reused for the keys under it) against the plain rule: the node
    when every command's slot has that owner (a keyless command's: any primary, the map's first), else
    None; over first commands of every shape."""
    connection = resp_cluster.ClusterConnection(redis_target.RedisTarget.parse("redis://127.0.0.1:7000/0"))
    reply = [
        [0, 5460, [b"10.0.0.1", 7000]],
        [5461, 10922, [b"10.0.0.2", 7001]],
        [10923, 16383, [b"10.0.0.3", 7002]],
    ]
    connection._owners, connection._known = resp_cluster.build_slot_map(reply, "127.0.0.1")
    firsts: list[resp.Command] = [
        ("HMGET", "t:{alice}:p", "w"), ("HMGET", "t:{}{alice}:p"), ("GET", "t:{alice"), ("GET", "alice"),
        ("GET", b"t:{alice}:p"), ("EVALSHA", "x", 1, "t:{alice}:c"), ("EVALSHA", "x", 0), ("PING",),
        ("FCALL", "f", 2, "t:{alice}:a", "t:{bob}:b"), ("GET", 7),
    ]  # fmt: skip
    others: list[resp.Command] = [
        ("HGETALL", "t:{alice}:s"), ("HGETALL", "t:{alice"), ("GET", "t:{}{alice}:p"), ("GET", "alice"),
        ("EVALSHA", "x", 1, "t:{alice}:c"), ("GET", "t:{bob}:x"), ("PING",), ("GET", "{alice}"),
    ]  # fmt: skip

    def plain(commands: list[resp.Command]) -> tuple[str, int] | None:
        owners = {connection.owner(resp_cluster.command_slot(command)) for command in commands}
        return owners.pop() if len(owners) == 1 else None

    checked = 0
    for first in firsts:
        for other in others:
            for commands in ([first, other], [first, other, other], [first, ("GET", "t:{alice}:z"), other]):
                assert connection._single_node(commands) == plain(commands), commands
                checked += 1
    assert checked == len(firsts) * len(others) * 3

"""Config files are bounded and every problem is reported with its line: alias bombs,
oversized files, duplicate keys, non-UTF-8 bytes, several bad items at once.

What is refused for its size is refused without being expanded or read whole: peak
traced memory (`tracemalloc`, every thread) stays far below what expanding it would
take."""

from __future__ import annotations

import textwrap
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from catalog_plugin import CatalogPlugin
from reactive_core import ConfigError, Host, apply_config_file, apply_config_text

pytestmark = pytest.mark.anyio

ALIAS_BOMB = textwrap.dedent("""\
    systems:
      - id: bomb
        name: Bomb
        metadata:
          a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
          b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
          c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
          d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
          e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
          f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
          g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
          h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
          i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    """)


@pytest.fixture
async def host(sqlite_url: str, anyio_backend: str) -> AsyncIterator[Host]:
    async with Host(database_url=sqlite_url, plugins=[CatalogPlugin], entry_points=False,
                    config={"workers": False, "config_max_bytes": 4096}) as running:
        yield running


async def stored_systems(host: Host) -> list[str]:
    return await host.entity("catalog-system").ids()


MB = 1024 * 1024


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    """Trace allocations (all threads) inside the block; the box then holds the peak."""
    box = [0]
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield box
    finally:
        box[0] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


async def test_an_alias_bomb_is_refused_before_it_expands(host: Host, tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 700  # 9**9 "lol"s once expanded: gigabytes
    with traced_peak() as peak, pytest.raises(
            ConfigError, match=r"<config>: the document expands to more than 100,000 YAML "
                               r"nodes \(aliases count each time they are used\): expected a "
                               r"smaller document"):
        await apply_config_text(host, ALIAS_BOMB)
    assert peak[0] < 100 * MB
    assert peak[0] < 5 * MB  # not even a sliver of it was built

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB, encoding="utf-8")
    with traced_peak() as peak, pytest.raises(ConfigError, match=r"bomb\.yaml: the document "
                                                                 r"expands to more than"):
        await apply_config_file(host, bomb)
    assert peak[0] < 5 * MB
    assert await stored_systems(host) == []


async def test_a_50_mb_file_is_refused_without_being_read(host: Host, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    line = b"  - {id: s, name: S, metadata: {a: &a [1, 2, 3], b: *a}}\n"
    with big.open("wb") as out:
        out.write(b"systems:\n")
        out.write(line * (50 * MB // len(line) + 1))
    assert big.stat().st_size > 50 * MB
    with traced_peak() as peak, pytest.raises(
            ConfigError, match=r"big\.yaml' has 52,\d{3},\d{3} bytes: expected at most 4,096 "
                               r"\(host config config_max_bytes\)"):
        await apply_config_file(host, big)
    assert peak[0] < 100 * MB
    assert peak[0] < 1 * MB  # refused from its size alone


async def test_a_50_mb_text_is_refused_without_copying_it(host: Host) -> None:
    text = "systems:\n" + "  - {id: s, name: S}\n" * (50 * MB // 21)
    with traced_peak() as peak, pytest.raises(
            ConfigError, match=r"<config> is larger than 4,096 bytes \(host config "
                               r"config_max_bytes\): expected a smaller document"):
        await apply_config_text(host, text)
    assert peak[0] < 100 * MB
    assert peak[0] < 1 * MB  # not encoded to count its bytes: its length is enough


async def test_a_file_that_never_ends_is_read_only_up_to_the_limit(host: Host) -> None:
    endless = Path("/dev/zero")  # `stat` says 0 bytes; reading it never ends
    assert endless.stat().st_size == 0
    with traced_peak() as peak, pytest.raises(
            ConfigError, match=r"config file '/dev/zero' has more than 4,096 bytes: expected "
                               r"at most 4,096"):
        await apply_config_file(host, endless)
    assert peak[0] < 1 * MB
    assert await stored_systems(host) == []


async def test_a_recursive_alias_is_refused(host: Host) -> None:
    text = "systems:\n  - &me {id: x, name: X, metadata: {self: *me}}\n"
    with pytest.raises(ConfigError, match=r"<config>:2: a YAML alias refers to a node that "
                                          r"contains it"):
        await apply_config_text(host, text)


async def test_a_file_over_the_size_limit_is_refused(host: Host, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("systems:\n" + "".join(f"  - {{id: s{n}, name: S{n}}}\n" for n in range(400)),
                   encoding="utf-8")
    with pytest.raises(ConfigError, match=r"has [\d,]+ bytes: expected at most 4,096 "
                                          r"\(host config config_max_bytes\)"):
        await apply_config_file(host, big)
    assert await stored_systems(host) == []


async def test_a_key_given_twice_is_an_error_naming_both_lines(host: Host) -> None:
    text = "systems:\n  - {id: a, name: A}\ndependencies: []\nsystems:\n  - {id: b, name: B}\n"
    with pytest.raises(ConfigError, match=r"<config>:4: key 'systems' is given twice in one "
                                          r"mapping \(first at line 1\)"):
        await apply_config_text(host, text)
    with pytest.raises(ConfigError, match=r"<config>:2: key 'name' is given twice"):
        await apply_config_text(host, "systems:\n  - {id: a, name: A, name: B}\n")
    assert await stored_systems(host) == []


async def test_every_bad_item_is_reported_with_its_line(host: Host) -> None:
    text = textwrap.dedent("""\
        systems:
          - {id: ok, name: OK}
          - {id: bad1}
          - {id: bad2, name: B, colour: red}
        dependencies:
          - {source: ok, target: ok, impact: fatal}
        nonsense: []
        """)
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text)
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        "<config>:3", "<config>:4", "<config>:6", "<config>:7"]
    assert "systems[1].name: Field required" in lines[0]
    assert "systems[2].colour: unknown field" in lines[1]
    assert "dependencies[0].impact" in lines[2]
    assert "unknown section 'nonsense'" in lines[3]
    assert await stored_systems(host) == []


async def test_bad_values_are_shown_short(host: Host) -> None:
    text = f"systems:\n  - {{id: a, name: A, tags: '{'x' * 3000}'}}\n"
    with pytest.raises(ConfigError) as info:
        await apply_config_text(host, text)
    assert len(str(info.value)) < 300 and "..." in str(info.value)


async def test_bytes_that_are_not_utf8_are_refused_naming_the_line(
    host: Host, tmp_path: Path,
) -> None:
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("systems:\n  - {id: cafe, name: Café}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml:2: byte 0xe9 at offset \d+ is not "
                                          r"UTF-8: expected a UTF-8 text file"):
        await apply_config_file(host, latin)
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing.yaml"):
        await apply_config_file(host, tmp_path / "missing.yaml")

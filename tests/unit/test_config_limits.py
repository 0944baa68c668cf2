"""Config files are bounded and every problem is reported with its line: alias bombs,
oversized files, duplicate keys, non-UTF-8 bytes, several bad items at once."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
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


async def test_an_alias_bomb_is_refused_before_it_expands(host: Host) -> None:
    assert len(ALIAS_BOMB) < 700
    with pytest.raises(ConfigError, match=r"<config>: the document expands to more than "
                                          r"100,000 YAML nodes"):
        await apply_config_text(host, ALIAS_BOMB)
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

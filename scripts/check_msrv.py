"""Checks that every crate the project builds with supports the declared MSRV.

The root crate's ``rust-version`` (Cargo.toml) is the oldest Rust it promises to build with.
Only one toolchain is installed here, so instead of compiling with that old Rust this reads
the locked dependency graph (``cargo metadata --locked --all-features``) and fails when a
crate declares a newer ``rust-version`` than ours. Clippy's ``incompatible_msrv`` lint
(part of ``make lint``) checks our own code against the same version.

Run: python scripts/check_msrv.py [--manifest-path Cargo.toml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest-path", default="Cargo.toml")
    args = parser.parse_args(argv)
    metadata = json.loads(
        subprocess.run(
            [
                "cargo",
                "metadata",
                "--format-version",
                "1",
                "--locked",
                "--all-features",
                "--manifest-path",
                args.manifest_path,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    root_id = metadata["resolve"]["root"]
    packages = {p["id"]: p for p in metadata["packages"]}
    used = {node["id"] for node in metadata["resolve"]["nodes"]}
    declared = packages[root_id].get("rust_version")
    if not declared:
        print(f"{args.manifest_path}: the root crate declares no rust-version", file=sys.stderr)
        return 1
    newer = sorted(
        (p["name"], p["version"], p["rust_version"])
        for pid, p in packages.items()
        if pid in used and p.get("rust_version") and _version(p["rust_version"]) > _version(declared)
    )
    for name, version, rust in newer:
        print(f"{name} {version} needs Rust {rust}, newer than the declared rust-version {declared}", file=sys.stderr)
    if newer:
        return 1
    print(f"rust-version {declared}: all {len(used)} locked crates support it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

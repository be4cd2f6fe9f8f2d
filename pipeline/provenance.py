"""What code made an artefact: the installed versions of the distributions it depends on (manifests, data cards)."""

from __future__ import annotations


def package_versions(*dists: str) -> dict[str, str]:
    """{distribution: installed version} for each of ``dists`` that is installed (``importlib.metadata``)."""
    import importlib.metadata as md

    found = {}
    for dist in dists:
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found

"""Where the files of a real Taskonomy download are: its layout, its domain folders, its buildings and views.

Three layouts are in use (reference section 6.2), each with files named
``point_<P>_view_<V>_domain_<token>.<ext>``:

- ``omnidata``: ``<root>/<domain>/taskonomy/<building>/`` (what ``omnitools.download`` extracts);
- ``flat``: ``<root>/<domain>/<building>/`` (what omnidata's PyTorch loaders expect);
- ``legacy``: ``<root>/<building>/<domain>/`` (the Stanford sample building and the 2018 code).

Only listings happen here: nothing is decoded, so the checks (a domain a listed task needs, a building
with missing views) come before any expensive work.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from taskonomy.errors import DataError

# The bank array each domain folder becomes (docs/bank-format.md); point_info serves every view-level and
# pairwise label, and mask_valid only the validity mask (where there is no z-buffer depth to take it from).
ARRAYS_OF_DOMAIN: dict[str, tuple[str, ...]] = {
    "rgb": ("rgb",),
    "depth_zbuffer": ("rgb2depth",),
    "depth_euclidean": ("rgb2mist",),
    "normal": ("rgb2sfnorm",),
    "reshading": ("reshade",),
    "principal_curvature": ("curvature",),
    "edge_occlusion": ("edge3d",),
    "keypoints3d": ("keypoint3d",),
    "segment_unsup25d": ("segment25d",),
    "edge_texture": ("edge2d",),
    "keypoints2d": ("keypoint2d",),
    "segment_unsup2d": ("segment2d",),
    "segment_semantic": ("segmentsemantic",),
    "class_object": ("class_object",),
    "class_scene": ("class_scene",),
    "point_info": ("room_layout", "vanishing_point", "fix_pose", "non_fixated_pose", "point_match", "ego_motion"),
    "mask_valid": (),
}
DOMAINS = tuple(ARRAYS_OF_DOMAIN)
DOMAIN_OF_ARRAY = {array: domain for domain, arrays in ARRAYS_OF_DOMAIN.items() for array in arrays}

# File tokens that differ from the folder name in the released data; the folder's own name is accepted too.
TOKENS = {"segment_semantic": ("segmentsemantic", "segment_semantic"), "class_scene": ("class_places", "class_scene")}
EXTENSIONS = {"class_object": "npy", "class_scene": "npy", "point_info": "json"}   # every other domain: png

LAYOUTS = ("omnidata", "flat", "legacy")
PATTERNS = {"omnidata": "<root>/<domain>/taskonomy/<building>/", "flat": "<root>/<domain>/<building>/",
            "legacy": "<root>/<building>/<domain>/"}
_NAME = re.compile(r"^point_(\d+)_view_(\d+)_domain_([A-Za-z0-9_]+)\.([a-z]+)$")

View = tuple[int, int]   # (point, view)


def tokens(domain: str) -> tuple[str, ...]:
    return TOKENS.get(domain, (domain,))


def extension(domain: str) -> str:
    return EXTENSIONS.get(domain, "png")


def domain_folder(root: Path, layout: str, domain: str, building: str) -> Path:
    """The folder holding one building's files of one domain."""
    if layout == "omnidata":
        return root / domain / "taskonomy" / building
    if layout == "flat":
        return root / domain / building
    return root / building / domain


def detect_layout(root: str | Path, layout: str = "auto") -> str:
    """The layout of the download at ``root`` (``layout`` if given and it fits), or a DataError saying which
    layouts were looked for."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (render.taskonomy.root)")
    found = [name for name in LAYOUTS if _fits(root, name)]
    if layout != "auto":
        if layout not in found:
            raise DataError(f"{root}: not in the {layout} layout ({PATTERNS[layout]} with a domain folder such as "
                            f"rgb){'; it looks like ' + found[0] if found else ''} (render.taskonomy.layout)")
        return layout
    if not found:
        looked = "; ".join(f"{name}: {pattern}" for name, pattern in PATTERNS.items())
        raise DataError(f"{root}: no Taskonomy layout recognised (looked for {looked}; domain one of "
                        f"{', '.join(DOMAINS)})")
    return found[0]


def _fits(root: Path, layout: str) -> bool:
    if layout == "omnidata":
        return any((root / d / "taskonomy").is_dir() for d in DOMAINS)
    if layout == "flat":
        return any((root / d).is_dir() and not (root / d / "taskonomy").is_dir()
                   and any(_has_views(b) for b in _subfolders(root / d)) for d in DOMAINS)
    return any(any((b / d).is_dir() for d in DOMAINS) for b in _subfolders(root) if b.name not in DOMAINS)


def _subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_views(folder: Path) -> bool:
    return any(_NAME.match(p.name) for p in folder.iterdir())


def present_domains(root: str | Path, layout: str) -> tuple[list[str], list[str]]:
    """The known domains with a folder at ``root`` and the buildings with an rgb folder, from folder names
    alone (no file listing: cheap on a download of millions of files, so the params check can use it)."""
    root = Path(root)
    domains = [d for d in DOMAINS if _building_folders(root, layout, d)]
    return domains, [name for name, _ in _building_folders(root, layout, "rgb")]


@dataclass(frozen=True)
class Download:
    """A listed download: for each domain present, each building's files by (point, view)."""
    root: Path
    layout: str
    files: dict[str, dict[str, dict[View, Path]]]     # domain -> building -> (point, view) -> file

    @property
    def domains(self) -> list[str]:
        return list(self.files)

    @property
    def buildings(self) -> list[str]:
        """Buildings with RGB images (the views of a building are its RGB files)."""
        return sorted(self.files.get("rgb", {}))

    def folder(self, domain: str, building: str) -> Path:
        return domain_folder(self.root, self.layout, domain, building)

    def expected_file(self, domain: str, building: str, view: View) -> Path:
        point, v = view
        return self.folder(domain, building) / f"point_{point}_view_{v}_domain_{tokens(domain)[0]}.{extension(domain)}"


def list_download(root: str | Path, layout: str = "auto", domains: list[str] | None = None) -> Download:
    """List the files of every known domain present at ``root`` (or only ``domains``): no decoding."""
    root = Path(root)
    layout = detect_layout(root, layout)
    wanted = list(domains) if domains else list(DOMAINS)
    unknown = [d for d in wanted if d not in ARRAYS_OF_DOMAIN]
    if unknown:
        raise DataError(f"render.taskonomy.domains: unknown domain {unknown[0]!r} (known: {', '.join(DOMAINS)})")
    if "rgb" not in wanted:
        wanted.insert(0, "rgb")
    files: dict[str, dict[str, dict[View, Path]]] = {}
    for domain in wanted:
        per_building = {}
        for building, folder in _building_folders(root, layout, domain):
            views = _views(folder, domain)
            if views:
                per_building[building] = views
        if per_building:
            files[domain] = per_building
    if "rgb" not in files:
        raise DataError(f"{root}: no rgb images found (looked for {PATTERNS[layout].replace('<domain>', 'rgb')}"
                        f"point_<P>_view_<V>_domain_rgb.png)")
    return Download(root=root, layout=layout, files=files)


def _building_folders(root: Path, layout: str, domain: str) -> list[tuple[str, Path]]:
    if layout == "omnidata":
        base = root / domain / "taskonomy"
    elif layout == "flat":
        base = root / domain
    else:
        return [(b.name, b / domain) for b in _subfolders(root) if (b / domain).is_dir()]
    return [(b.name, b) for b in _subfolders(base)] if base.is_dir() else []


def _views(folder: Path, domain: str) -> dict[View, Path]:
    accepted, ext = tokens(domain), extension(domain)
    views = {}
    for path in folder.iterdir():
        m = _NAME.match(path.name)
        if m and m.group(3) in accepted and m.group(4) == ext:
            views[(int(m.group(1)), int(m.group(2)))] = path
    return dict(sorted(views.items()))


def check_complete(download: Download, buildings: list[str]) -> None:
    """Every domain present has a file for every RGB view of each of ``buildings``, or a DataError naming
    the first missing file (a building whose folder is missing altogether is named with that folder)."""
    for building in buildings:
        views = download.files["rgb"][building]
        for domain in download.domains:
            have = download.files[domain].get(building)
            if have is None:
                raise DataError(f"{download.folder(domain, building)}: missing (building {building} has rgb "
                                f"but no {domain}; every domain read needs every building)")
            for view in views:
                if view not in have:
                    raise DataError(f"{download.expected_file(domain, building, view)}: missing (building "
                                    f"{building} has rgb for point {view[0]} view {view[1]})")

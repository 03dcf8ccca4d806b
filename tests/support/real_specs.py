"""Dataset specs over the real sample data in ../shared/data."""

from __future__ import annotations

from pathlib import Path


def ct_mr_spec(shared: Path, tmp_path: Path, kind: str) -> Path:
    folder, image = ("ct_abdomen_totalseg", "ct.nii.gz") if kind == "CT" else ("mr_abdomen_totalseg", "mr.nii.gz")
    path = tmp_path / f"{kind}.toml"
    path.write_text(
        f'name = "{kind.lower()}"\nmodality = "{kind}"\nbody_region = "abdomen"\nroot = "{shared / folder}"\n'
        f'labels_file = "labels.json"\n[cases]\nimage = "{image}"\nmask = "seg.nii.gz"\n'
        '[render]\naxes = ["axial", "coronal"]\nslices = "spread:2"\n'
    )
    return path


def ph2_spec(shared: Path, tmp_path: Path) -> Path:
    """The shared PH2 (images/ and masks/ as PNG) read like the ph2 preset, with its diagnoses."""
    from importlib import resources

    preset = (resources.files("medground") / "presets" / "datasets" / "ph2.toml").read_text(encoding="utf-8")
    text = preset.replace(
        'image = "{case}/{case}_Dermoscopic_Image/{case}.bmp"', 'image = "images/{case}.png"'
    ).replace('mask = "{case}/{case}_lesion/{case}_lesion.bmp"', 'mask = "masks/{case}.png"')
    path = tmp_path / "ph2.toml"
    path.write_text(f'root = "{shared / "dermoscopy_ph2"}"\n' + text)
    return path

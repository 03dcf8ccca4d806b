"""Verification stage 2 (rules): every claim of the query agrees with the computed facts,
the claims pick out exactly the target(s) among the view's objects, and the target is
medically plausible.

Reason codes: ``category_mismatch``, ``laterality_mismatch``, ``side_without_orientation``,
``position_mismatch``, ``shape_mismatch``, ``intensity_mismatch``, ``size_mismatch``,
``measurement_mismatch``, ``relation_mismatch``, ``count_mismatch``, ``ambiguous``,
``no_match``, ``unknown_structure``, ``laterality_prior``, ``implausible_size``,
``unexpected_region``, ``outside_container``, ``below_visibility_floor``, ``schema``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from medground.anatomy import is_lesion, priors
from medground.facts import category_key, holds
from medground.records import Sample, StageResult
from medground.terms import clinical_term
from medground.verify.claims import Claims, extract_claims

__all__ = ["RuleSettings", "check_rules"]


@dataclass(frozen=True)
class RuleSettings:
    """Tolerances of the rules stage."""

    length_tolerance: float = 0.25  # relative, for "2 cm" against the diameter
    length_tolerance_mm: float = 3.0
    volume_tolerance: float = 0.3
    min_area_px: int = 16
    min_cross_section_share: float = 0.2
    max_volume_factor: float = 2.5  # × the prior's upper bound


def _matches(
    claims: Claims,
    fact: dict[str, Any],
    facts: dict[int, dict[str, Any]],
    sample: Sample,
    settings: RuleSettings,
    body_region: str | None,
    multi: bool,
) -> str | None:
    """None when the object satisfies every claim, else the reason code of the first that fails."""

    def has(attribute: str, value: Any) -> bool:
        return holds(attribute, value, fact, facts, width=sample.width, height=sample.height, body_region=body_region)

    if claims.parts and fact["pieces"] < 2:
        return "count_mismatch"
    if claims.categories and not any(
        category_key(c, body_region)
        in (category_key(fact["category"], body_region), category_key(fact["label"], body_region))
        for c in claims.categories
    ):
        return "category_mismatch"
    if claims.generic and not claims.categories and not is_lesion(fact["label"]):
        return "category_mismatch"
    for side in claims.sides:
        if side == "bilateral" and multi:
            continue
        if fact["laterality"] != side:
            return "laterality_mismatch"
    if any(not has("position", p) for p in claims.positions):
        return "position_mismatch"
    if claims.shapes and fact["shape"] not in claims.shapes:
        return "shape_mismatch"
    if claims.intensities and fact["intensity"] not in claims.intensities:
        return "intensity_mismatch"
    if claims.size_classes and fact["size_class"] not in claims.size_classes:
        return "size_mismatch"
    if claims.size_ranks and not multi and fact["size_rank"] not in claims.size_ranks:
        return "size_mismatch"
    for length in claims.lengths_mm:
        if abs(length - fact["diameter_mm"]) > max(
            settings.length_tolerance_mm, settings.length_tolerance * fact["diameter_mm"]
        ):
            return "measurement_mismatch"
    for volume in claims.volumes_ml:
        if fact["volume_ml"] is None or abs(volume - fact["volume_ml"]) > settings.volume_tolerance * fact["volume_ml"]:
            return "measurement_mismatch"
    for kind, other_label in claims.relations:
        ok = has(kind, other_label) if kind in ("within", "touches") else has("relation", f"{kind}:{other_label}")
        if not ok:
            return "relation_mismatch"
    return None


def check_rules(
    sample: Sample,
    facts: dict[int, dict[str, Any]],
    *,
    body_region: str | None,
    oriented: bool,
    settings: RuleSettings | None = None,
    labels: Iterable[str] = (),
) -> StageResult:
    """Stage 2: every claim agrees with the computed cues, the claims pick out exactly the
    target(s) among the view's objects, and the target is medically plausible.

    ``labels`` are the dataset's label names, so that a query naming a structure absent from
    the view is caught too."""
    settings = settings or RuleSettings()
    stage = "rules"
    # Every structure a claim could name: the view's objects and those they relate to.
    labels = sorted(
        set(labels)
        | {f["label"] for f in facts.values()}
        | {name for f in facts.values() for name in [f["within"], *f["touches"], *f["boundary_shares"]] if name}
        | {f["nearest"].partition(":")[2] for f in facts.values() if f["nearest"]}
    )
    claims = extract_claims(sample.query, labels, body_region)
    info = {"claims": claims.to_dict()}
    multi = sample.query_type == "multi_object"
    targets = {t.object_id for t in sample.targets}
    missing = targets - set(facts)
    if missing:
        return StageResult.fail(stage, "schema", f"targets {sorted(missing)} are not objects of the view")
    if claims.unknown:
        return StageResult(
            stage,
            False,
            "unknown_structure",
            f"the query names {', '.join(claims.unknown)}, which no label of the dataset matches",
            info,
        )
    if not oriented and any(side in ("left", "right") for side in claims.sides):
        return StageResult(
            stage,
            False,
            "side_without_orientation",
            "the image has no patient orientation; left/right may only be image-relative",
            info,
        )
    for component in sorted(targets):
        reason = _matches(claims, facts[component], facts, sample, settings, body_region, multi)
        if reason is not None:
            return StageResult(
                stage,
                False,
                reason,
                f"claim disagrees with the cues of target {component} "
                f"({facts[component]['label']}): {claims.to_dict()}",
                info,
            )
    if claims.counts:
        if multi:
            expected = len(targets)
        else:
            expected = sum(1 for f in facts.values() if f["label"] == facts[min(targets)]["label"])
        if any(count != expected for count in claims.counts):
            return StageResult(stage, False, "count_mismatch", f"claims {claims.counts}, the view has {expected}", info)
    matching = {c for c, f in facts.items() if _matches(claims, f, facts, sample, settings, body_region, multi) is None}
    if matching != targets:
        extra = sorted(matching - targets)
        return StageResult(
            stage,
            False,
            "ambiguous" if extra else "no_match",
            f"the claims also fit {', '.join(facts[c]['label'] + ' ' + str(c) for c in extra)}"
            if extra
            else "the claims fit no object",
            info,
        )
    prior = _priors(sample, facts, targets, body_region, settings)
    if prior is not None:
        return StageResult(stage, False, prior[0], prior[1], info)
    return StageResult(stage, True, info=info)


def _priors(
    sample: Sample,
    facts: dict[int, dict[str, Any]],
    targets: Iterable[int],
    body_region: str | None,
    settings: RuleSettings,
) -> tuple[str, str] | None:
    table = priors()
    for component in targets:
        fact = facts[component]
        label = fact["label"]
        side = clinical_term(label, body_region).side
        if side is not None and fact["laterality"] in ("left", "right") and fact["laterality"] != side:
            return "laterality_prior", f"{label} lies on the patient's {fact['laterality']}"
        key = label.lower().replace(" ", "_").removesuffix("_left").removesuffix("_right")
        volume_range = table.get("volume_ml", {}).get(key)
        if (
            volume_range
            and fact["volume_ml"] is not None
            and fact["volume_ml"] > settings.max_volume_factor * volume_range[1]
        ):
            return (
                "implausible_size",
                f"{label} of {fact['volume_ml']:.0f} mL (usual {volume_range[0]}-{volume_range[1]} mL)",
            )
        regions = table.get("body_regions", {}).get(key)
        if regions and body_region not in (None, "unspecified") and body_region not in regions:
            return "unexpected_region", f"{label} is not expected in a {body_region} study ({', '.join(regions)})"
        container = _container(label, facts, body_region)
        if container is not None and fact["boundary_shares"].get(container, 0.0) == 0.0 and fact["within"] != container:
            return "outside_container", f"{label} does not touch the {container}"
        if fact["area_px"] < settings.min_area_px or fact["cross_section_share"] < settings.min_cross_section_share:
            return "below_visibility_floor", (
                f"{fact['area_px']} px, {fact['cross_section_share']:.0%} of its largest cross-section"
            )
    return None


def _container(label: str, facts: dict[int, dict[str, Any]], body_region: str | None) -> str | None:
    """The organ a lesion label names ("liver lesion" → "liver"), when that organ is in the view."""
    if not is_lesion(label):
        return None
    organs = {f["label"] for f in facts.values() if not is_lesion(f["label"])}
    words = label.lower().replace("_", " ")
    for organ in sorted(organs, key=len, reverse=True):
        noun = category_key(organ, body_region)
        if words.startswith(noun + " ") or words.startswith(organ.lower().replace("_", " ") + " "):
            return str(organ)
    return None

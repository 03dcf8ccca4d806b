"""The claim parser: what a query asserts (categories, relations, positions, sides,
measurements, intensities, size ranks and counts)."""

from __future__ import annotations

from medground.verify import extract_claims


def test_claims_parser() -> None:
    labels = ["liver", "liver lesion", "kidney_left", "kidney_right", "gallbladder", "lung_upper_lobe_left"]
    claims = extract_claims(
        "Locate the largest hypodense liver lesion within the liver, 2.5 cm across, "
        "in the upper right part of the image.",
        labels,
    )
    assert claims.categories == ["liver lesion"] and claims.relations == [("within", "liver")]
    assert claims.positions == ["upper right"] and claims.sides == [] and claims.lengths_mm == [25.0]
    assert claims.intensities == ["hypodense"] and claims.size_ranks == ["largest"]
    claims = extract_claims("The structure inferior to the gallbladder and adjacent to the right kidney.", labels)
    assert claims.relations == [("inferior", "gallbladder"), ("touches", "kidney_right")] and not claims.sides
    assert extract_claims("Locate the left upper lobe of the lung.", labels).relations == []
    assert extract_claims("Find both kidneys.", labels).counts == [2]

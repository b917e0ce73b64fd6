"""``--format cyclonedx``: CycloneDX 1.6 JSON with the VEX of CVE-2024-3094, built and validated by
``cyclonedx-python-lib``.

Each image is a ``container`` component (purl ``pkg:oci/NAME@DIGEST``); one
vulnerability entry for CVE-2024-3094 affects each of them with its own
analysis (the mapping is in ``report.vex``): ``exploitable`` when sshd would
load the implant, ``in_triage`` when implant material is there but nothing
loads it (or only source material, or the image could not be judged), and
``not_affected`` with ``code_not_present`` when the bytes are clean, whatever
version a package database names. The document is validated against the
CycloneDX 1.6 schema before it is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import ImpactAnalysisJustification, ImpactAnalysisState
from cyclonedx.model.vulnerability import BomTarget, Vulnerability, VulnerabilityAnalysis, VulnerabilitySource
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from layerhound import __version__
from layerhound.errors import LayerhoundError
from layerhound.model import ImageResult
from layerhound.report.rules import ADVISORY, CVE
from layerhound.report.vex import REMEDY, STATUS, action_key, image_iri, image_purl


class CycloneDxError(LayerhoundError):
    """The library refused the document it built (a bug of ours: please report)."""


def cyclonedx_bom(results: Sequence[ImageResult], rules_version: str, actions: Mapping[str, str] | None = None) -> Bom:
    bom = Bom()
    bom.metadata.properties.add(Property(name="layerhound:version", value=__version__))
    bom.metadata.properties.add(Property(name="layerhound:rules", value=rules_version))
    targets: list[tuple[Component, ImageResult]] = []
    for index, result in enumerate(results):
        purl = image_purl(result)
        component = Component(
            name=result.ref,
            type=ComponentType.CONTAINER,
            version=result.digest,
            bom_ref=f"{purl or image_iri(result)}#{index}",  # two tags of one digest stay two components
            purl=PackageURL.from_string(purl) if purl else None,
            properties=[Property(name="layerhound:verdict", value=result.verdict.value),
                        *([Property(name="layerhound:platform", value=result.platform)] if result.platform else []),
                        *([Property(name="layerhound:base", value=result.base)] if result.base else [])],
        )
        bom.components.add(component)
        targets.append((component, result))
    for component, result in targets:
        status = STATUS[result.verdict]
        justification = (ImpactAnalysisJustification(status.cyclonedx_justification)
                         if status.cyclonedx_justification else None)
        detail = f"{result.verdict.value}: " + "; ".join(result.reasons)
        vulnerability = Vulnerability(
            bom_ref=f"{CVE}#{component.bom_ref.value}",
            id=CVE,
            source=VulnerabilitySource(name="NVD", url=XsUri(ADVISORY)),
            description="XZ Utils backdoor: liblzma 5.6.0/5.6.1 built from the backdoored release tarballs",
            recommendation=((actions or {}).get(action_key(result)) or REMEDY) if status.openvex == "affected"
            else None,
            analysis=VulnerabilityAnalysis(
                state=ImpactAnalysisState(status.cyclonedx), justification=justification, detail=detail
            ),
            affects=[BomTarget(ref=str(component.bom_ref.value))],
        )
        bom.vulnerabilities.add(vulnerability)
    return bom


def render_cyclonedx(
    results: Sequence[ImageResult], rules_version: str, actions: Mapping[str, str] | None = None
) -> str:
    text: str = JsonV1Dot6(cyclonedx_bom(results, rules_version, actions)).output_as_string(indent=2)
    problem = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if problem is not None:
        raise CycloneDxError(f"the CycloneDX document did not validate: {problem}")
    return json.dumps(json.loads(text), indent=2) + "\n"

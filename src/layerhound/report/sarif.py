"""``--format sarif``: SARIF 2.1.0, for code scanning (GitHub's upload among them).

One run; the driver lists every rule the results use, with its description,
help and ``security-severity``. One result per finding, located at its path
inside the image (``artifactLocation.uri`` relative to the ``IMAGE_ROOT`` base,
which SARIF leaves to the consumer) and, as logical locations, in its image and
its layer (digest and position). The image's verdict and reasons go in the
result's properties, and ``partialFingerprints`` carry a stable hash of
(image digest, rule, path), so uploads of the same image de-duplicate. An image
that could not be judged is a tool execution notification, not a result.
The schema (OASIS SARIF 2.1.0 Errata 01) ships in ``report/schema``.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from typing import Any

from layerhound import __version__
from layerhound.model import Finding, ImageResult, Indicates, Verdict
from layerhound.report.rules import ADVISORY, CVE, SEVERITY, rule_text

SARIF_SCHEMA_URI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT = "layerhound/v1"
LEVEL = {
    Indicates.IMPLANT: "error",
    Indicates.PAYLOAD: "error",
    Indicates.SOURCE: "warning",
    Indicates.AFFECTED_VERSION: "warning",
    Indicates.INCONSISTENCY: "note",
}


def load_sarif_schema() -> dict[str, Any]:
    """The SARIF 2.1.0 JSON schema shipped with the package (see schema/SOURCES.md)."""
    text = resources.files("layerhound.report").joinpath("schema/sarif-schema-2.1.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def fingerprint(image: ImageResult, finding: Finding) -> str:
    """Stable across runs for the same image, rule, path, layer and archive member (two layers
    may carry the same path; a tarball holds several members)."""
    member = str(finding.evidence.get("member", ""))
    key = "\0".join([image.digest or image.ref, finding.rule, finding.path, finding.layer or "", member])
    return hashlib.sha256(key.encode("utf-8", "backslashreplace")).hexdigest()


def artifact_uri(path: str) -> str:
    """An in-image path as a relative URI reference: percent-encoded, ``:`` included, so no segment
    reads as a scheme (``/c:/x``) and ``#``, ``%`` or spaces stay part of the path."""
    quoted: str = urllib.parse.quote(path.lstrip("/").encode("utf-8", "backslashreplace"), safe="/!$&'()*+,;=@-._~")
    return quoted or "."


_ORDER = [Indicates.IMPLANT, Indicates.PAYLOAD, Indicates.SOURCE, Indicates.AFFECTED_VERSION, Indicates.INCONSISTENCY]


def _layer_position(image: ImageResult, digest: str | None) -> int | None:
    for index, layer in enumerate(image.layers):
        if layer.digest == digest:
            return index
    return None


def _result(image: ImageResult, finding: Finding, rule_index: int) -> dict[str, Any]:
    text = rule_text(finding.rule, finding.indicates)
    where = "in the final filesystem" if finding.in_final_fs else "in a lower layer only (deleted above)"
    logical: list[dict[str, Any]] = [{"name": image.ref, "fullyQualifiedName": image.digest or image.ref,
                                      "kind": "image"}]
    if finding.layer:
        position = _layer_position(image, finding.layer)
        layer: dict[str, Any] = {"name": finding.layer, "kind": "layer"}
        if position is not None:
            layer["properties"] = {"position": position}
        logical.append(layer)
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": LEVEL[finding.indicates],
        "message": {"text": f"{text.short}: {finding.path} {where}, image {image.ref} ({image.verdict.value})"},
        "locations": [{
            # A binary has no lines; GitHub's upload needs region.startLine, so line 1 stands for the file.
            "physicalLocation": {"artifactLocation": {"uri": artifact_uri(finding.path),
                                                      "uriBaseId": "IMAGE_ROOT"},
                                 "region": {"startLine": 1}},
            "logicalLocations": logical,
        }],
        "partialFingerprints": {FINGERPRINT: fingerprint(image, finding)},
        "properties": {
            "image": image.ref,
            "digest": image.digest,
            "platform": image.platform,
            "verdict": image.verdict.value,
            "reasons": image.reasons,
            "base": image.base,
            "kind": finding.kind.value,
            "indicates": finding.indicates.value,
            "in_final_fs": finding.in_final_fs,
            "sha256": finding.sha256,
            "layer": finding.layer,
            "detector": finding.detector,
        },
    }


def sarif_document(results: Sequence[ImageResult], rules_version: str) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    sarif_results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    # A rule's level and severity are those of its most severe finding anywhere in the run
    # (an implant inside an archive is payload, a known-bad hash may be source material).
    worst: dict[str, Indicates] = {}
    for image in results:
        for finding in image.findings:
            known = worst.get(finding.rule)
            if known is None or _ORDER.index(finding.indicates) < _ORDER.index(known):
                worst[finding.rule] = finding.indicates
    for image in results:
        if image.verdict is Verdict.ERROR:
            notifications.append({"level": "error", "message": {"text": f"{image.ref}: {image.error or 'not judged'}"},
                                  "properties": {"image": image.ref, "failure": image.failure.kind
                                                 if image.failure else None}})
            continue
        for finding in image.findings:
            if finding.rule not in index:
                indicates = worst[finding.rule]
                text = rule_text(finding.rule, indicates)
                index[finding.rule] = len(rules)
                rules.append({
                    "id": finding.rule,
                    "name": "".join(part.capitalize() for part in finding.rule.split("-")),
                    "shortDescription": {"text": text.short},
                    "fullDescription": {"text": text.full},
                    "help": {"text": f"{text.help} See {ADVISORY}.",
                             "markdown": f"{text.help} See [{CVE}]({ADVISORY})."},
                    "helpUri": ADVISORY,
                    "defaultConfiguration": {"level": LEVEL[indicates]},
                    "properties": {"security-severity": f"{SEVERITY[indicates]:.1f}",
                                   "tags": ["security", CVE, "supply-chain"], "indicates": indicates.value},
                })
            sarif_results.append(_result(image, finding, index[finding.rule]))
    invocation: dict[str, Any] = {"executionSuccessful": not notifications}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    return {
        "$schema": SARIF_SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "layerhound",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": ADVISORY,
                "rules": rules,
                "properties": {"rules-version": rules_version},
            }},
            "originalUriBaseIds": {"IMAGE_ROOT": {"description": {"text": "The root of each image's filesystem."}}},
            "invocations": [invocation],
            "results": sarif_results,
            "properties": {"images": [{"ref": i.ref, "digest": i.digest, "platform": i.platform,
                                       "verdict": i.verdict.value} for i in results]},
        }],
    }


def render_sarif(results: Sequence[ImageResult], rules_version: str) -> str:
    return json.dumps(sarif_document(results, rules_version), indent=2) + "\n"

"""What a verdict says in VEX terms, for OpenVEX (and CycloneDX's vulnerability analysis).

The mapping, chosen deliberately (a VEX consumer suppresses what is
``not_affected``, so nothing that carries implant bytes may land there):

| verdict | OpenVEX status (justification) | CycloneDX analysis.state (justification) |
|---|---|---|
| backdoored-reachable | affected | exploitable |
| backdoored-dormant | affected: the implant is there, a change of entrypoint or env makes it fire | in_triage |
| backdoor-in-history | affected: the layer with the implant is still distributed | in_triage |
| source-artifacts | under_investigation: backdoored source, no built implant | in_triage |
| affected-version-not-injected | not_affected (vulnerable_code_not_present) | not_affected (code_not_present) |
| clean | not_affected (vulnerable_code_not_present) | not_affected (code_not_present) |
| error | under_investigation: not judged | in_triage |

Every statement's impact or status notes are the verdict's reasons; an
``affected`` one carries the action to take (``advise``'s, when the store knows a
clean tag, else the generic remedy).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packageurl import PackageURL

from layerhound import __version__
from layerhound.errors import ReferenceError_
from layerhound.model import ImageResult, Verdict
from layerhound.report.rules import ADVISORY, CVE
from layerhound.sources.refs import DOCKER, parse_docker_name, parse_reference

OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
REMEDY = (
    "Move to a maintained tag whose liblzma is not from the backdoored 5.6.0/5.6.1 release tarballs "
    "(`layerhound advise` names the newest clean one), rebuild derived images on a clean base, "
    "and stop distributing this image."
)


@dataclass(frozen=True)
class VexStatus:
    openvex: str
    justification: str | None
    cyclonedx: str
    cyclonedx_justification: str | None


STATUS: dict[Verdict, VexStatus] = {
    Verdict.BACKDOORED_REACHABLE: VexStatus("affected", None, "exploitable", None),
    Verdict.BACKDOORED_DORMANT: VexStatus("affected", None, "in_triage", None),
    Verdict.BACKDOOR_IN_HISTORY: VexStatus("affected", None, "in_triage", None),
    Verdict.SOURCE_ARTIFACTS: VexStatus("under_investigation", None, "in_triage", None),
    Verdict.AFFECTED_VERSION_NOT_INJECTED: VexStatus(
        "not_affected", "vulnerable_code_not_present", "not_affected", "code_not_present"
    ),
    Verdict.CLEAN: VexStatus("not_affected", "vulnerable_code_not_present", "not_affected", "code_not_present"),
    Verdict.ERROR: VexStatus("under_investigation", None, "in_triage", None),
}


def image_purl(result: ImageResult) -> str | None:
    """``pkg:oci/NAME@DIGEST?repository_url=…&tag=…`` for an image with a digest (the purl spec's oci type)."""
    if not result.digest:
        return None
    name, qualifiers = "image", {}
    try:
        reference = parse_reference(result.ref)
    except ReferenceError_:
        reference = None
    if reference is not None and reference.transport == DOCKER and reference.repository:
        name = reference.repository.rsplit("/", 1)[-1]
        qualifiers["repository_url"] = f"{reference.registry}/{reference.repository}"
        if reference.tag:
            qualifiers["tag"] = reference.tag
    elif reference is None:
        try:
            registry, repository, tag, _ = parse_docker_name(result.ref)
        except ReferenceError_:
            pass
        else:
            name = repository.rsplit("/", 1)[-1]
            qualifiers = {"repository_url": f"{registry}/{repository}", **({"tag": tag} if tag else {})}
    purl: str = PackageURL(type="oci", name=name, version=result.digest, qualifiers=qualifiers).to_string()
    return purl


def action_key(result: ImageResult) -> str:
    """How ``actions`` name an image: its digest (a tag may have moved on), else its reference."""
    return result.digest or result.ref


def image_iri(result: ImageResult) -> str:
    """An IRI for an image without a digest (a root filesystem, a file)."""
    return "urn:layerhound:image:" + urllib.parse.quote(result.ref, safe="")


def load_openvex_schema() -> dict[str, Any]:
    """The OpenVEX 0.2.0 JSON schema shipped with the package (see schema/SOURCES.md)."""
    text = resources.files("layerhound.report").joinpath("schema/openvex-0.2.0.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def openvex_document(
    results: Sequence[ImageResult], rules_version: str, actions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One OpenVEX 0.2.0 document, a statement per image; ``actions`` are advice by image reference."""
    when = _now()
    statements = []
    for result in results:
        status = STATUS[result.verdict]
        purl = image_purl(result)
        product: dict[str, Any] = {"@id": purl or image_iri(result)}
        if purl:
            product["identifiers"] = {"purl": purl}
            algorithm, _, value = (result.digest or "").partition(":")
            if algorithm in ("sha256", "sha512") and value:
                product["hashes"] = {"sha-256" if algorithm == "sha256" else "sha-512": value}
        notes = "; ".join(result.reasons) or result.verdict.value
        statement: dict[str, Any] = {
            "vulnerability": {"@id": ADVISORY, "name": CVE, "description": "XZ Utils backdoor (liblzma 5.6.0/5.6.1)"},
            "timestamp": when,
            "products": [product],
            "status": status.openvex,
            "status_notes": f"layerhound verdict {result.verdict.value} (rules {rules_version})",
        }
        if status.openvex == "not_affected":
            statement["justification"] = status.justification
            statement["impact_statement"] = notes
        elif status.openvex == "affected":
            statement["action_statement"] = (actions or {}).get(action_key(result)) or REMEDY
            statement["action_statement_timestamp"] = when
            statement["status_notes"] += f": {notes}"
        else:
            statement["status_notes"] += f": {notes}"
        statements.append(statement)
    content = json.dumps([s["products"] + [s["status"]] for s in statements], sort_keys=True)
    return {
        "@context": OPENVEX_CONTEXT,
        "@id": _document_id(content),
        "author": "layerhound",
        "role": "scanner",
        "timestamp": when,
        "version": 1,
        "tooling": f"layerhound {__version__} (rules {rules_version})",
        "statements": statements,
    }


def _document_id(content: str) -> str:
    """The same statements give the same document id (``urn:uuid:`` of their hash)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'layerhound:' + hashlib.sha256(content.encode()).hexdigest())}"


def render_openvex(
    results: Sequence[ImageResult], rules_version: str, actions: Mapping[str, str] | None = None
) -> str:
    return json.dumps(openvex_document(results, rules_version, actions), indent=2) + "\n"

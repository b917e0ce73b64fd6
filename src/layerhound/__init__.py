"""layerhound: find the XZ Utils backdoor (CVE-2024-3094) in container images."""

__version__ = "0.1.0"

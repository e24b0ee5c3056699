"""Every media defect name the code records is in the catalogue, and the reverse."""

from __future__ import annotations

import re
from pathlib import Path

from siptrap.media.defects import MEDIA_DEFECTS

MEDIA_SRC = Path(__file__).resolve().parents[1] / "src" / "siptrap" / "media"
NAME = re.compile(r'"((?:rtp|rtcp|dtmf)_[a-z0-9_]+)"')


def test_catalogue_matches_the_code():
    used = set()
    for path in MEDIA_SRC.glob("*.py"):
        text = path.read_text()
        # only the modules that record defects: elsewhere rtp_* names are summary fields
        if path.name != "defects.py" and "defects" in text:
            used |= set(NAME.findall(text))
    assert used
    assert used <= set(MEDIA_DEFECTS), used - set(MEDIA_DEFECTS)
    assert set(MEDIA_DEFECTS) <= used, set(MEDIA_DEFECTS) - used
    assert all(text and not text.endswith(".") for text in MEDIA_DEFECTS.values())

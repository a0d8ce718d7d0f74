"""Evidence bundles: what the archive holds about a change, in a file anyone can check.

`monitor export` gathers versions and changes from the store (collect.py), turns them into
items (items.py: WARC `request`/`response` records for our own network captures, `resource`
records for rendered DOMs, extracted texts, screenshots, diffs and for versions imported from
an archive, one `metadata` record: evidence.json), and writes them as a WACZ, a plain WARC or
a folder-like zip (write.py). `monitor verify FILE` checks a bundle with no database
(check.py): every digest of the container and of each WARC record, every hash-chain entry the
bundle carries and the links from it to the chain head it names, and every file against the
digest its chain entry records. `monitor anchor` prints the chain head to publish (anchor.py).
`export --sign` signs the bundle's digest with Ed25519 (sign.py, `monitor keygen`) and
`--timestamp` adds an RFC 3161 token from a time-stamping authority (timestamp.py).

evidence.json (format `privacy-monitor-evidence/1`) is the map: which record or file holds
which fact of which version or change, and the chain entries that vouch for them.
"""

from __future__ import annotations

EVIDENCE_FORMAT = "privacy-monitor-evidence/1"
EVIDENCE_URI = "urn:monitor:evidence"
FORMATS = ("wacz", "warc", "zip")
SUFFIXES = {"wacz": ".wacz", "warc": ".warc.gz", "zip": ".zip"}

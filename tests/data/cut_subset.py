"""Cut the test subsets from the full EGMS products (run once; see ATTRIBUTION.md).

Usage: python tests/data/cut_subset.py /work/shared/data/egms tests/data

Keeps the rows nearest the burst's median point, byte for byte and in their original order,
with the header and the XML unchanged, in a zip laid out like the portal's.
"""
import sys
import zipfile
from pathlib import Path

import numpy as np

SUBSETS = {"EGMS_L2b_022_0845_IW2_VV_2020_2024_1": 300, "EGMS_L3_E45N17_100km_U_2020_2024_1": 200}
CENTRE_FROM = "EGMS_L2b_022_0845_IW2_VV_2020_2024_1"


def _rows(archive: zipfile.ZipFile, stem: str):
    lines = archive.read(f"{stem}.csv").decode("utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    ix, iy = header.index("easting"), header.index("northing")
    xy = np.array([[float(f) for f in (line.split(",")[ix], line.split(",")[iy])] for line in lines[1:]])
    return lines, xy


def main(source: Path, target: Path) -> None:
    with zipfile.ZipFile(source / f"{CENTRE_FROM}.zip") as archive:
        _, xy = _rows(archive, CENTRE_FROM)
    centre = np.median(xy, axis=0)
    for stem, keep in SUBSETS.items():
        with zipfile.ZipFile(source / f"{stem}.zip") as archive:
            lines, xy = _rows(archive, stem)
            xml = archive.read(f"{stem}.xml")
        nearest = np.sort(np.argsort(np.hypot(*(xy - centre).T), kind="stable")[:keep])
        csv_text = lines[0] + "".join(lines[1 + i] for i in nearest)
        with zipfile.ZipFile(target / f"{stem}.zip", "w", zipfile.ZIP_DEFLATED) as out:
            out.writestr(f"{stem}.csv", csv_text)
            out.writestr(f"{stem}.xml", xml)
        print(f"{stem}: {keep} of {len(lines) - 1} rows around {centre.round(1)}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

"""Independent reader of a DICOM SEG for Osteon's tests (pydicom + numpy, not dicom-rs).

Usage: read_seg.py SEG.dcm OUT.raw
Unpacks PixelData itself (numpy.unpackbits, bitorder='little': first pixel = least significant bit,
frames as one continuous bit stream, PS3.5 8.1.1), writes the frames as uint8 [frame, row, column]
C-order to OUT.raw and prints one JSON object: rows, columns, frames, bits_allocated, per-frame IPP
strings as stored, per-frame source SOP Instance UIDs, referenced segment numbers, count of set pixels,
and whether pydicom's own pixel_array agrees with our unpacking.
"""
import json
import sys

import numpy as np
import pydicom


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    ds = pydicom.dcmread(path)
    rows, cols = int(ds.Rows), int(ds.Columns)
    n = int(getattr(ds, "NumberOfFrames", 1))
    bits = int(ds.BitsAllocated)
    raw = np.frombuffer(ds.PixelData, dtype=np.uint8)
    if bits == 1:
        frames = np.unpackbits(raw, bitorder="little")[: n * rows * cols]
    else:
        frames = raw[: n * rows * cols]
    frames = frames.reshape(n, rows, cols).astype(np.uint8)
    frames.tofile(out)
    ipp, sources, segments = [], [], []
    for item in ds.PerFrameFunctionalGroupsSequence:
        pos = item.PlanePositionSequence[0]
        ipp.append([str(v) for v in pos["ImagePositionPatient"].value])
        uids = []
        for d in getattr(item, "DerivationImageSequence", []):
            for s in d.SourceImageSequence:
                uids.append(str(s.ReferencedSOPInstanceUID))
        sources.append(uids)
        segments.append(int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber))
    try:
        pa = ds.pixel_array.reshape(n, rows, cols)
        agrees = bool(np.array_equal(pa.astype(np.uint8), frames))
    except Exception as e:  # pixel handler missing: report, do not hide
        agrees = f"pixel_array failed: {e}"
    print(json.dumps({
        "sop_class_uid": str(ds.SOPClassUID),
        "rows": rows,
        "columns": cols,
        "frames": n,
        "bits_allocated": bits,
        "pixel_data_length": len(ds.PixelData),
        "ipp": ipp,
        "sources": sources,
        "segments": segments,
        "set_pixels": int(frames.sum()),
        "pixel_array_agrees": agrees,
    }))


if __name__ == "__main__":
    main()

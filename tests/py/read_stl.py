"""Independent reader of an Encapsulated STL object for Osteon's tests (pydicom).

Usage: read_stl.py OBJ.dcm OUT.stl
Writes the first EncapsulatedDocumentLength bytes of EncapsulatedDocument to OUT.stl and prints one
JSON object with the SOP class, modality, MIME type, stated length and stored value length.
"""
import json
import sys

import pydicom


def main() -> None:
    path, out = sys.argv[1], sys.argv[2]
    ds = pydicom.dcmread(path)
    doc = bytes(ds.EncapsulatedDocument)
    length = int(ds.EncapsulatedDocumentLength)
    with open(out, "wb") as f:
        f.write(doc[:length])
    print(json.dumps({
        "sop_class_uid": str(ds.SOPClassUID),
        "modality": str(ds.Modality),
        "mime": str(ds.MIMETypeOfEncapsulatedDocument),
        "length": length,
        "stored_length": len(doc),
        "frame_of_reference_uid": str(ds.FrameOfReferenceUID),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "units": [str(ds.MeasurementUnitsCodeSequence[0].CodeValue),
                  str(ds.MeasurementUnitsCodeSequence[0].CodingSchemeDesignator)],
    }))


if __name__ == "__main__":
    main()

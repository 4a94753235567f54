"""core.csfile: real files, both forms, cryosparc-tools compatibility, bad input, `csfs cs show`."""
from __future__ import annotations

import json
import re
import struct

import cryosparc.dataset as cryosparc_dataset
import numpy as np
import pytest
from csfs.core import csfile
from csfs.core.csfile import CsFormatError
from csfs.core.errors import NotFoundError, UsageError

Dataset = cryosparc_dataset.Dataset
CSDAT_FORMAT = cryosparc_dataset.CSDAT_FORMAT
NUMPY_FORMAT = cryosparc_dataset.NUMPY_FORMAT

# name -> (rows, fields, form, first uid or None, first blob/path or None)
REAL = {
    "cryosparc_P12_J24_001_particles.cs": (2019, 34, "numpy", 15494748553812943456,
        b"J19/extract/20150917_05196_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc"),
    "cryosparc_J2_particles_exported.cs": (22, 42, "numpy", 2714306824294111763,
        b">J1/imported/000090334788266266069_18jam15b_0345_ali_DW.mrcs"),
    "empiar_10076_7.cs": (7, 24, "numpy", 3806243878409217281, b"empiar_10076_7.mrc"),
    "4k_dataset.cs": (0, 106, "numpy", None, None),
    "P12_J24_particles.csdat-lz4.cs": (2019, 34, "csdat", 15494748553812943456,
        b"J19/extract/20150917_05196_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc"),
}


def assert_same_as_dataset(arr: np.ndarray, dset) -> None:
    """csfs array == cryosparc-tools Dataset, field by field (strings compared as text)."""
    assert list(arr.dtype.names) == dset.fields()
    for name in arr.dtype.names:
        ours = arr[name]
        if ours.dtype.kind == "S":
            ours = np.vectorize(lambda b: b.decode(), otypes="O")(ours) if ours.size else ours.astype("O")
        assert np.array_equal(ours, dset[name]), name


def assert_arrays_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype.names == b.dtype.names
    for name in a.dtype.names:
        assert a.dtype[name].shape == b.dtype[name].shape, name
        assert np.array_equal(a[name], b[name]), name


def synthetic(rows: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    arr = np.zeros(rows, [("uid", "<u8"), ("blob/path", "S40"), ("blob/idx", "<u4"),
                          ("blob/shape", "<u4", (2,)), ("ctf/type", "S12"), ("ctf/df1_A", "<f4"),
                          ("alignments3D/pose", "<f4", (3,)), ("location/micrograph_path", "S30")])
    arr["uid"] = rng.integers(0, 2**63, rows, dtype=np.uint64)
    arr["blob/path"] = [f"J3/extract/mic_{i % 7:03d}_particles.mrc".encode() for i in range(rows)]
    arr["blob/idx"] = np.arange(rows)
    arr["blob/shape"] = 256
    arr["ctf/type"] = [b"" if i % 3 else b"ctffind4" for i in range(rows)]
    arr["ctf/df1_A"] = rng.normal(15000, 1000, rows)
    arr["alignments3D/pose"] = rng.normal(size=(rows, 3))
    arr["location/micrograph_path"] = [f"J2/mic_{i % 7:03d}.mrc".encode() for i in range(rows)]
    return arr


# ------------------------------------------------------------------ real files

@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_loads(realdata, name):
    rows, nfields, form, uid0, path0 = REAL[name]
    path = realdata / name
    arr = csfile.load(path)
    assert arr.shape == (rows,) and len(arr.dtype.names) == nfields
    info = csfile.info(path)
    assert (info.format, info.rows, len(info.fields)) == (form, rows, nfields)
    assert [f[0] for f in info.fields] == list(arr.dtype.names)
    if rows:
        assert arr["uid"][0] == uid0 and arr["blob/path"][0] == path0
        assert arr.dtype["blob/shape"].shape == (2,)
    assert_same_as_dataset(arr, Dataset.load(path))


def test_4096_byte_file_with_large_header(realdata):
    path = realdata / "4k_dataset.cs"
    assert path.stat().st_size == 4096
    arr = csfile.load(path)
    assert len(arr) == 0 and "alignments_class_2/class_ess" in arr.dtype.names
    assert csfile.load(path, ["uid", "location/micrograph_path"]).dtype.names == ("uid", "location/micrograph_path")


def test_both_forms_of_P12_are_equal(realdata):
    classic = csfile.load(realdata / "cryosparc_P12_J24_001_particles.cs")
    compressed = csfile.load(realdata / "P12_J24_particles.csdat-lz4.cs")
    assert classic.dtype == compressed.dtype       # |S widths match: longest + 1
    assert_arrays_equal(classic, compressed)


@pytest.mark.parametrize("name", ["cryosparc_P12_J24_001_particles.cs", "P12_J24_particles.csdat-lz4.cs"])
def test_field_selection(realdata, name, monkeypatch):
    monkeypatch.setattr(csfile, "CHUNK_BYTES", 1000)   # force many read chunks
    full = csfile.load(realdata / name)
    sel = csfile.load(realdata / name, ["blob/path", "uid", "alignments3D/pose", "uid"])
    assert sel.dtype.names == ("blob/path", "uid", "alignments3D/pose")
    assert sel.dtype.itemsize == sum(full.dtype[n].itemsize for n in sel.dtype.names)
    for n in sel.dtype.names:
        assert np.array_equal(sel[n], full[n])


def test_classic_form_is_memory_mapped(realdata):
    arr = csfile.load(realdata / "cryosparc_P12_J24_001_particles.cs")
    assert isinstance(arr, np.memmap) and not arr.flags.writeable


def test_unknown_field(realdata):
    with pytest.raises(NotFoundError, match="no field 'nope'"):
        csfile.load(realdata / "empiar_10076_7.cs", ["uid", "nope"])
    with pytest.raises(NotFoundError, match="no field"):
        csfile.load(realdata / "P12_J24_particles.csdat-lz4.cs", ["nope"])


@pytest.mark.parametrize("name", ["cryosparc_P12_J24_001_particles.cs", "P12_J24_particles.csdat-lz4.cs",
                                  "cryosparc_J2_particles_exported.cs"])
def test_load_strings_rebuilds_the_column(realdata, name):
    full = csfile.load(realdata / name, ["blob/path"])["blob/path"]
    values, codes = csfile.load_strings(realdata / name, "blob/path")
    assert codes.dtype == np.uint32 and len(codes) == len(full)
    assert np.array_equal(values[codes], full)
    assert len(set(values.tolist())) == len(values)          # distinct
    first = [full.tolist().index(v) for v in values.tolist()]
    assert first == sorted(first)                            # in order of first appearance


def test_load_strings_refuses_numbers_and_unknown_fields(realdata):
    with pytest.raises(UsageError, match="not a string column"):
        csfile.load_strings(realdata / "cryosparc_P12_J24_001_particles.cs", "uid")
    with pytest.raises(NotFoundError):
        csfile.load_strings(realdata / "P12_J24_particles.csdat-lz4.cs", "blob/nope")


def test_path_fields(realdata):
    arr = csfile.load(realdata / "cryosparc_P12_J24_001_particles.cs")
    assert csfile.path_fields(arr) == ["blob/path"]
    # location/micrograph_path names the micrograph a particle was picked from: a data path too
    assert csfile.path_fields(synthetic().dtype) == ["blob/path", "location/micrograph_path"]


# ------------------------------------------------------------------ writing / compatibility

@pytest.mark.parametrize("name", ["cryosparc_P12_J24_001_particles.cs", "cryosparc_J2_particles_exported.cs",
                                  "4k_dataset.cs"])
def test_classic_writer_is_byte_compatible_with_cryosparc(realdata, tmp_path, name):
    arr = csfile.load(realdata / name)
    Dataset.load(realdata / name).save(tmp_path / "tools.cs", format=NUMPY_FORMAT)
    assert csfile.dumps(arr) == (tmp_path / "tools.cs").read_bytes()


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("rows", [0, 1, 50])
def test_csfs_written_loads_in_cryosparc_tools(tmp_path, compressed, rows):
    arr = synthetic(rows)
    csfile.save(tmp_path / "x.cs", arr, compressed=compressed)
    assert (tmp_path / "x.cs").read_bytes()[:6] == (b"\x95CSDAT" if compressed else b"\x93NUMPY")
    assert csfile.info(tmp_path / "x.cs").format == ("csdat" if compressed else "numpy")
    assert_same_as_dataset(arr, Dataset.load(tmp_path / "x.cs"))
    back = csfile.load(tmp_path / "x.cs")
    assert_arrays_equal(arr, back)
    if rows:
        assert back.dtype["blob/path"] == np.dtype("S33")   # trimmed to longest + 1


@pytest.mark.parametrize("form", ["numpy", "csdat"])
def test_cryosparc_tools_written_loads_in_csfs(realdata, tmp_path, form):
    fmt = CSDAT_FORMAT if form == "csdat" else NUMPY_FORMAT
    for name in ["cryosparc_P12_J24_001_particles.cs", "cryosparc_J2_particles_exported.cs", "4k_dataset.cs"]:
        dset = Dataset.load(realdata / name)
        dset.save(tmp_path / name, format=fmt)
        assert csfile.info(tmp_path / name).format == form
        arr = csfile.load(tmp_path / name)
        assert_same_as_dataset(arr, dset)
        assert_arrays_equal(arr, csfile.load(realdata / name))


def test_cryosparc_tools_stream_uncompressed_loads(tmp_path):
    dset = Dataset(synthetic(10))
    (tmp_path / "u.cs").write_bytes(b"".join(dset.stream(compression=None)))
    assert_same_as_dataset(csfile.load(tmp_path / "u.cs"), dset)
    assert_same_as_dataset(csfile.load(tmp_path / "u.cs", ["uid", "ctf/type"]),
                           Dataset.load(tmp_path / "u.cs", fields=["uid", "ctf/type"]))


def test_writer_normalizes_strings_and_byte_order(tmp_path):
    arr = np.zeros(3, [("uid", ">u8"), ("name", "U10"), ("obj", "O"), ("v", ">f4", (2,))])
    arr["uid"] = [1, 2, 3]
    arr["name"] = ["a", "µm", ""]
    arr["obj"] = ["x", b"yy", "zzz"]
    arr["v"] = [[1, 2], [3, 4], [5, 6]]
    for compressed in (False, True):
        csfile.save(tmp_path / "n.cs", arr, compressed=compressed)
        back = csfile.load(tmp_path / "n.cs")
        assert back.dtype == np.dtype([("uid", "<u8"), ("name", "S4"), ("obj", "S4"), ("v", "<f4", (2,))])
        assert back["name"].tolist() == [b"a", "µm".encode(), b""]
        assert back["obj"].tolist() == [b"x", b"yy", b"zzz"] and back["v"].tolist() == arr["v"].tolist()


@pytest.mark.parametrize("compressed", [False, True])
def test_string_subarray_round_trip(tmp_path, compressed):
    arr = np.zeros(3, [("uid", "<u8"), ("pair", "S8", (2,))])
    arr["pair"] = [[b"a", b"bb"], [b"", b"cccc"], [b"a", b"a"]]
    csfile.save(tmp_path / "p.cs", arr, compressed=compressed)
    back = csfile.load(tmp_path / "p.cs")
    assert back.dtype["pair"] == np.dtype(("S5", (2,))) and back["pair"].tolist() == arr["pair"].tolist()


def test_writer_refuses_non_string_objects_and_plain_arrays(tmp_path):
    arr = np.zeros(2, [("uid", "<u8"), ("o", "O")])
    arr["o"] = [1, {}]
    with pytest.raises(UsageError, match="Python objects"):
        csfile.save(tmp_path / "o.cs", arr)
    with pytest.raises(UsageError, match="structured"):
        csfile.dumps(np.zeros(3))
    assert not (tmp_path / "o.cs").exists() and not list(tmp_path.iterdir())


def test_header_larger_than_numpy_default(tmp_path):
    dtype = [("uid", "<u8")] + [(f"alignments_class_{i}/field_{j}", "<f4") for i in range(40) for j in range(18)]
    arr = np.zeros(3, dtype)
    arr["uid"] = [7, 8, 9]
    csfile.save(tmp_path / "wide.cs", arr)
    with pytest.raises(ValueError):
        np.load(tmp_path / "wide.cs")          # numpy's default max_header_size refuses it
    assert csfile.load(tmp_path / "wide.cs", ["uid"])["uid"].tolist() == [7, 8, 9]
    assert len(csfile.info(tmp_path / "wide.cs").fields) == 721


# ------------------------------------------------------------------ bad input

def patched(tmp_path, data: bytes, old: bytes, new: bytes) -> str:
    assert len(old) == len(new) and data.count(old) >= 1
    path = tmp_path / "bad.cs"
    path.write_bytes(data.replace(old, new, 1))
    return str(path)


def test_bad_magic_and_legacy(tmp_path):
    cases = {b"": "empty file", b"\x94CSDAT" + b"\0" * 50: "legacy snappy", b"hello world": "not a .cs file",
             b"\x93NUMPY\x01\x00\x05\x00{'de": "bad .npy header"}
    for data, msg in cases.items():
        (tmp_path / "b.cs").write_bytes(data)
        for call in (csfile.load, csfile.info):
            with pytest.raises(CsFormatError, match=msg):
                call(tmp_path / "b.cs")


def test_pickled_object_array_refused(tmp_path):
    arr = np.zeros(2, [("uid", "<u8"), ("o", "O")])
    np.save(tmp_path / "p.npy", arr, allow_pickle=True)
    with pytest.raises(CsFormatError, match="pickled"):
        csfile.load(tmp_path / "p.npy")


def test_not_a_structured_array(tmp_path):
    np.save(tmp_path / "plain.npy", np.arange(10))
    with pytest.raises(CsFormatError, match="1-D structured"):
        csfile.load(tmp_path / "plain.npy")


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated(tmp_path, compressed):
    data = csfile.dumps(synthetic(), compressed=compressed)
    for cut in (len(data) - 5, len(data) // 2, 12, 8):
        (tmp_path / "t.cs").write_bytes(data[:cut])
        with pytest.raises(CsFormatError, match="truncated|row count|corrupt|outside the string heap|header"):
            csfile.load(tmp_path / "t.cs")


def test_numpy_header_lies_about_rows(tmp_path):
    data = csfile.dumps(synthetic(50))
    with pytest.raises(CsFormatError, match="truncated: the header says 51 rows"):
        csfile.load(patched(tmp_path, data, b"(50,)", b"(51,)"))
    with pytest.raises(CsFormatError, match=r"row count \(49\) is wrong"):
        csfile.load(patched(tmp_path, data, b"(50,)", b"(49,)"), ["uid"])


def test_csdat_header_lies_about_rows(tmp_path):
    data = csfile.dumps(synthetic(50), compressed=True)
    for lie in (b'"length": 49', b'"length": 51'):
        path = patched(tmp_path, data, b'"length": 50', lie)
        with pytest.raises(CsFormatError, match="row|corrupt"):
            csfile.load(path)


def test_csdat_bad_headers(tmp_path):
    data = csfile.dumps(synthetic(5), compressed=True)
    for old, new, msg in [(b'"length": 5', b'"length":-5', "length"),
                          (b'"compression": "lz4"', b'"compression": "zzz"', "compression"),
                          (b'"<f4"', b'"<x4"', "unknown dtype"),
                          (b'"<f4"', b'"|O4"', "dtype"),
                          (b'{"length"', b'["length"', "bad CSDAT header")]:
        with pytest.raises(CsFormatError, match=msg):
            csfile.load(patched(tmp_path, data, old, new))
    hlen = struct.unpack("<I", data[6:10])[0]
    (tmp_path / "h.cs").write_bytes(data[:6] + struct.pack("<I", hlen + 10**6) + data[10:])
    with pytest.raises(CsFormatError, match="truncated"):
        csfile.info(tmp_path / "h.cs")


def csdat(rows: int, dtype: list, columns: list[bytes], heap: bytes) -> bytes:
    """An uncompressed CSDAT file built by hand."""
    header = json.dumps({"length": rows, "dtype": dtype, "compression": None, "compressed_fields": []}).encode()
    body = b"".join(struct.pack("<I", len(c)) + c for c in columns)
    return b"\x95CSDAT" + struct.pack("<I", len(header)) + header + body + heap


def test_csdat_string_heap(tmp_path):
    def load(offsets, heap=b"\0ab\0cd\0"):
        data = csdat(2, [["uid", "<u8"], ["s", "|O"]], [struct.pack("<QQ", 5, 6), struct.pack("<QQ", *offsets)], heap)
        (tmp_path / "s.cs").write_bytes(data)
        return csfile.load(tmp_path / "s.cs")

    assert load((1, 4))["s"].tolist() == [b"ab", b"cd"]
    assert load((0, 4)).dtype["s"] == np.dtype("S3")
    with pytest.raises(CsFormatError, match="outside the string heap"):
        load((1, 999))
    with pytest.raises(CsFormatError, match="outside the string heap"):
        load((1, 4), heap=b"\0ab\0cd")          # last string not NUL-terminated


def test_missing_file(tmp_path):
    with pytest.raises(NotFoundError):
        csfile.load(tmp_path / "nope.cs")


# ------------------------------------------------------------------ CLI

def test_cli_show_json(realdata, csfs):
    for name, (rows, nfields, form, *_rest) in REAL.items():
        r = csfs("cs", "show", realdata / name, "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert (out["format"], out["rows"], len(out["fields"])) == (form, rows, nfields)
        assert out["fields"][0] == {"name": "uid", "dtype": "<u8", "shape": []}


def test_cli_show_table_and_head(realdata, csfs):
    r = csfs("cs", "show", realdata / "P12_J24_particles.csdat-lz4.cs", "--head", "2")
    assert r.returncode == 0, r.stderr
    assert "csdat form, 2019 rows, 34 fields" in r.stdout
    assert re.search(r"\nalignments3D/pose +<f4 +3\n", r.stdout)
    assert r.stdout.count("J19/extract/20150917_05196_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072") == 2
    r = csfs("cs", "show", realdata / "empiar_10076_7.cs", "--head", "1", "--json")
    head = json.loads(r.stdout)["head"]
    assert head[0]["blob/path"] == "empiar_10076_7.mrc" and head[0]["blob/shape"] == [320, 320]


@pytest.mark.parametrize("content", [b"\x94CSDAT junk", b"not a cs file", b"\x93NUMPY\x01\x00"])
def test_cli_bad_file_exit_2(tmp_path, csfs, content):
    (tmp_path / "bad.cs").write_bytes(content)
    r = csfs("cs", "show", tmp_path / "bad.cs")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr and r.stderr.startswith("csfs: ")
    r = csfs("cs", "show", tmp_path / "missing.cs")
    assert r.returncode == 2 and "no such file" in r.stderr


def test_cli_show_head_json_is_strict_json_with_nan(tmp_path, csfs):
    """NaN and infinities (common in real .cs files) must not make `--json` output invalid JSON."""
    arr = np.zeros(3, dtype=[("uid", "<u8"), ("ctf/df1_A", "<f4"), ("alignments3D/pose", "<f4", (3,))])
    arr["ctf/df1_A"] = [np.nan, np.inf, 1.5]
    arr["alignments3D/pose"][0] = [np.nan, -np.inf, 2.0]
    csfile.save(tmp_path / "nan.cs", arr)
    r = csfs("cs", "show", tmp_path / "nan.cs", "--head", "3", "--json")
    assert r.returncode == 0, r.stderr

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    head = json.loads(r.stdout, parse_constant=refuse)["head"]
    assert [h["ctf/df1_A"] for h in head] == [None, None, 1.5]
    assert head[0]["alignments3D/pose"] == [None, None, 2.0]
    r = csfs("cs", "show", tmp_path / "nan.cs", "--head", "3")
    assert r.returncode == 0 and "nan" in r.stdout and "inf" in r.stdout


def test_numpy_header_with_unclosed_bracket(tmp_path, csfs):
    """A damaged header numpy cannot tokenize is a format error (was a tokenize traceback)."""
    data = csfile.dumps(synthetic(5))
    end = data.index(b"}")
    path = tmp_path / "t.cs"
    path.write_bytes(data[:end] + b" " + data[end + 1:])
    for call in (csfile.info, csfile.load):
        with pytest.raises(CsFormatError, match="header"):
            call(path)
    r = csfs("cs", "show", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_csdat_dtype_numpy_cannot_parse(tmp_path):
    """'08f' makes numpy raise SyntaxError: still a format error, not a traceback."""
    data = csfile.dumps(synthetic(), compressed=True)
    path = patched(tmp_path, data, b'["ctf/df1_A", "<f4"]', b'["ctf/df1_A", "08f"]')
    for call in (csfile.info, csfile.load):
        with pytest.raises(CsFormatError, match="dtype"):
            call(path)

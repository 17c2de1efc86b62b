//! The operator's image as `hack/image.sh` builds it without a Docker engine: an OCI archive
//! read the way a registry client reads it (index.json → manifest → config and layer blobs,
//! each checked against its digest), its config (platform, user, entrypoint, command, port,
//! labels), its one layer (the binary byte for byte, the libraries it links and a few files
//! from the base, nothing else), and the Dockerfile saying the same.
//!
//! The test builds the image from the debug binary: the release build takes long on a small
//! machine, and the image is the same but for the binary (hack/image.sh without `--binary`
//! builds the release one).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::{stderr, stdout};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// One entry of a ustar archive.
struct Entry {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
    /// '0' a file, '5' a directory, '2' a symlink.
    kind: u8,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or_else(|e| panic!("octal field {text:?}: {e}"))
}

fn cstr(field: &[u8]) -> String {
    String::from_utf8(field.iter().take_while(|b| **b != 0).copied().collect()).expect("UTF-8 name")
}

/// A ustar archive as hack/image.sh writes it (`tar --format=ustar`: no extension headers).
fn read_tar(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= bytes.len() {
        let header = &bytes[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        assert_eq!(&header[257..262], b"ustar", "a ustar header at {at}");
        let kind = header[156];
        assert!(
            matches!(kind, b'0' | b'5' | b'2'),
            "entry type {:?}: only files, dirs and links",
            kind as char
        );
        let prefix = cstr(&header[345..500]);
        let name = cstr(&header[0..100]);
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let size = usize::try_from(octal(&header[124..136])).expect("size");
        let data = bytes[at + 512..at + 512 + size].to_vec();
        out.push(Entry {
            path,
            mode: u32::try_from(octal(&header[100..108])).expect("mode"),
            uid: octal(&header[108..116]),
            gid: octal(&header[116..124]),
            kind,
            data,
        });
        at += 512 + size.div_ceil(512) * 512;
    }
    out
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The blob a descriptor points at, checked against its digest and size.
fn blob<'a>(files: &'a BTreeMap<String, Vec<u8>>, descriptor: &Value) -> &'a [u8] {
    let digest = descriptor["digest"].as_str().expect("digest");
    let path = format!("blobs/{}", digest.replacen(':', "/", 1));
    let data = files
        .get(&path)
        .unwrap_or_else(|| panic!("{path} missing from the archive"));
    assert_eq!(sha256(data), digest, "{path}: content does not match its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(data.len() as u64),
        "{path}: size"
    );
    data
}

/// The libraries the dynamic loader resolves for `binary` on this host, as ldd lists them.
fn linked_libraries(binary: &Path) -> BTreeSet<String> {
    let out = Command::new("ldd").arg(binary).output().expect("run ldd");
    assert!(out.status.success(), "ldd: {}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            match line.split_once(" => ") {
                Some((_, rest)) => rest.split_whitespace().next().filter(|p| p.starts_with('/')),
                None => line.split_whitespace().next().filter(|p| p.starts_with('/')),
            }
        })
        .map(|p| p.trim_start_matches('/').to_string())
        .collect()
}

/// USER, ENTRYPOINT, CMD, EXPOSE and LABELs of the Dockerfile's last stage.
fn dockerfile_final_stage() -> (String, Value, Value, String, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(common::repo_root().join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let stage = joined.rsplit("\nFROM ").next().expect("a FROM");
    let (mut user, mut entrypoint, mut cmd, mut expose) =
        (String::new(), Value::Null, Value::Null, String::new());
    let mut labels = BTreeMap::new();
    for line in stage.lines() {
        let Some((instruction, rest)) = line.trim().split_once(' ') else {
            continue;
        };
        let rest = rest.trim();
        match instruction {
            "USER" => user = rest.to_string(),
            "ENTRYPOINT" => entrypoint = serde_json::from_str(rest).expect("ENTRYPOINT in exec form"),
            "CMD" => cmd = serde_json::from_str(rest).expect("CMD in exec form"),
            "EXPOSE" => expose = rest.to_string(),
            "LABEL" => {
                for pair in rest.split_whitespace() {
                    let (key, value) = pair.split_once('=').expect("LABEL key=value");
                    labels.insert(key.to_string(), value.trim_matches('"').to_string());
                }
            }
            _ => {}
        }
    }
    (user, entrypoint, cmd, expose, labels)
}

#[test]
fn image_archive_has_the_config_and_layer_the_dockerfile_describes() {
    let binary = Path::new(env!("CARGO_BIN_EXE_report-operator"));
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("report-operator.oci.tar");
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .arg(common::repo_root().join("hack/image.sh"))
        .arg("--binary")
        .arg(binary)
        .arg("--output")
        .arg(&archive)
        .output()
        .expect("run hack/image.sh");
    assert!(out.status.success(), "hack/image.sh failed:\n{}", stderr(&out));
    eprintln!("hack/image.sh took {:?}", started.elapsed());

    // The OCI image layout.
    let files: BTreeMap<String, Vec<u8>> = read_tar(&std::fs::read(&archive).expect("read archive"))
        .into_iter()
        .filter(|e| e.kind == b'0')
        .map(|e| (e.path.trim_start_matches("./").to_string(), e.data))
        .collect();
    let layout: Value = serde_json::from_slice(&files["oci-layout"]).expect("oci-layout");
    assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value = serde_json::from_slice(&files["index.json"]).expect("index.json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image: {index}");
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);
    let manifest: Value = serde_json::from_slice(blob(&files, &manifests[0])).expect("manifest");
    assert_eq!(manifest["config"]["mediaType"], OCI_CONFIG);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer on an empty base: {manifest}");
    assert_eq!(layers[0]["mediaType"], OCI_LAYER_GZIP);
    let blobs: BTreeSet<&str> = files
        .keys()
        .filter(|k| k.starts_with("blobs/"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        blobs.len(),
        3,
        "the manifest, the config and the layer, no other blob: {blobs:?}"
    );

    // The config.
    let config: Value = serde_json::from_slice(blob(&files, &manifest["config"])).expect("config");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    let c = &config["config"];
    let (user, entrypoint, cmd, expose, labels) = dockerfile_final_stage();
    assert_eq!(c["User"], "65532:65532", "non-root");
    assert_eq!(c["User"], user.as_str(), "the Dockerfile's USER");
    assert_eq!(c["Entrypoint"], json!(["/report-operator"]));
    assert_eq!(c["Cmd"], json!(["run"]));
    assert_eq!(
        (&c["Entrypoint"], &c["Cmd"]),
        (&entrypoint, &cmd),
        "the Dockerfile's ENTRYPOINT and CMD"
    );
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(expose, "8080", "the Dockerfile's EXPOSE");
    let image_labels: BTreeMap<String, String> =
        serde_json::from_value(c["Labels"].clone()).expect("Labels, a map of strings");
    assert_eq!(
        image_labels["org.opencontainers.image.source"],
        "https://github.com/report-operator/report-operator"
    );
    assert_eq!(
        image_labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        image_labels["org.opencontainers.image.licenses"],
        env!("CARGO_PKG_LICENSE")
    );
    assert_eq!(image_labels, labels, "the Dockerfile's LABELs");

    // The layer.
    let mut layer = Vec::new();
    flate2::read::GzDecoder::new(blob(&files, &layers[0]))
        .read_to_end(&mut layer)
        .expect("gunzip layer");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!([sha256(&layer)]),
        "diff_id of the layer"
    );
    let entries = read_tar(&layer);
    for e in &entries {
        assert_eq!((e.uid, e.gid), (0, 0), "{} is root's", e.path);
        assert!(
            !e.path.starts_with('/') && !e.path.contains(".."),
            "{}: a path inside the root",
            e.path
        );
    }
    let by_path: BTreeMap<&str, &Entry> = entries
        .iter()
        .map(|e| (e.path.trim_end_matches('/'), e))
        .collect();
    let operator = by_path
        .get("report-operator")
        .expect("/report-operator in the layer");
    assert_eq!(operator.mode & 0o7777, 0o755);
    assert!(
        operator.data == std::fs::read(binary).expect("read binary"),
        "/report-operator is the binary"
    );
    let tmp = by_path.get("tmp").expect("/tmp");
    assert_eq!(
        (tmp.kind, tmp.mode & 0o7777),
        (b'5', 0o1777),
        "/tmp: a sticky, world-writable dir"
    );
    let passwd = String::from_utf8(by_path["etc/passwd"].data.clone()).expect("passwd");
    assert!(
        passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")),
        "user 65532 is named: {passwd}"
    );

    let mut expected: BTreeSet<String> = [
        "report-operator",
        "etc/passwd",
        "etc/group",
        "etc/nsswitch.conf",
        "etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let libraries = linked_libraries(binary);
    assert!(
        libraries.iter().any(|l| l.ends_with("/libc.so.6")),
        "ldd lists libc: {libraries:?}"
    );
    expected.extend(libraries);
    let files_in_layer: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.kind != b'5')
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(files_in_layer, expected, "the layer holds exactly these files");

    // The layer's root file system runs the binary as the image's user (chroot needs root).
    if stdout(&Command::new("id").arg("-u").output().expect("id -u")).trim() == "0" {
        let root = work.path().join("rootfs");
        for e in &entries {
            let path = root.join(&e.path);
            match e.kind {
                b'5' => std::fs::create_dir_all(&path).expect("mkdir"),
                _ => {
                    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&path, &e.data).expect("write");
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode)).expect("chmod");
                }
            }
        }
        let out = Command::new("chroot")
            .arg("--userspec=65532:65532")
            .arg(&root)
            .args(["/report-operator", "--version"])
            .output()
            .expect("run chroot");
        assert!(
            out.status.success(),
            "the binary does not run in the image's root: {}",
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(env!("CARGO_PKG_VERSION")),
            "{}",
            stdout(&out)
        );
    } else {
        eprintln!("not root: skipping the run of the binary in the layer's root file system");
    }
}

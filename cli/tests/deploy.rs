//! `deploy/`: what can be checked without a Docker engine or a Kubernetes cluster (neither runs on the
//! development machines). The YAML is read with PyYAML (`QOE_YAML_PYTHON`, a Python that has it;
//! `scripts/test.sh` installs one), so these tests are ignored under plain `cargo test`.
//! - every `qoe` command line in the Compose file and the manifests names a command and flags the
//!   real binary knows, and every typed value on the command line parses (`qoe ... --help` parses
//!   the line before it prints the help, and fails on an unknown flag or a value of the wrong type).
//!   What `--help` does not check: values from the environment, required flags, and plain string
//!   values (URLs, output specs, write keys), which the command itself checks when it starts;
//! - every image is pinned to a tag, and the builder's Rust is the toolchain the repository pins;
//! - ports agree: what the collector listens on is what Compose publishes and what the Service
//!   targets; selectors match the pods they select; the Grafana mounts and variables exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The YAML documents of `path`, as JSON (anchors and merge keys resolved by PyYAML).
fn yaml(path: &Path) -> Vec<Value> {
    let python = std::env::var("QOE_YAML_PYTHON")
        .expect("QOE_YAML_PYTHON names a Python with PyYAML (scripts/test.sh installs one)");
    let output = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("running python");
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Runs `qoe <args> --help` with exactly `env`; returns the error output when clap refused the line.
fn refused(args: &[String], env: &BTreeMap<String, String>) -> Option<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_qoe"))
        .args(args)
        .arg("--help")
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    (!output.status.success()).then(|| String::from_utf8_lossy(&output.stderr).to_string())
}

/// Kubernetes' `$(VAR)` references in an argument, replaced from `env`.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = arg.to_string();
    for (name, value) in env {
        out = out.replace(&format!("$({name})"), value);
    }
    out
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| match item {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn pinned(image: &str) -> bool {
    image
        .rsplit_once(':')
        .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest" && !tag.contains('/'))
}

#[test]
#[ignore = "needs QOE_YAML_PYTHON, a Python with PyYAML (scripts/test.sh installs one)"]
fn the_compose_file_runs_commands_the_binary_accepts_with_consistent_ports_and_mounts() {
    let compose_dir = root().join("deploy/compose");
    let compose = yaml(&compose_dir.join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().unwrap();
    let mut problems = Vec::new();
    for (name, service) in services {
        let image = service["image"].as_str().unwrap_or_default();
        if !pinned(image) {
            problems.push(format!("{name}: image {image:?} is not pinned to a tag"));
        }
        if !image.starts_with("qoe-pipeline:") {
            continue;
        }
        let env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| {
                (
                    key.clone(),
                    value.as_str().map_or_else(|| value.to_string(), str::to_string),
                )
            })
            .collect();
        let args = strings(&service["command"]);
        if let Some(error) = refused(&args, &env) {
            problems.push(format!("{name}: `qoe {}` is refused: {error}", args.join(" ")));
        }
    }
    // The collector listens where Compose publishes it.
    let collector = &services["collector"];
    let args = strings(&collector["command"]);
    let listen = args[args.iter().position(|arg| arg == "--listen").unwrap() + 1].clone();
    let port = listen.rsplit_once(':').unwrap().1.to_string();
    let published = strings(&collector["ports"]);
    if !published.iter().any(|mapping| mapping.ends_with(&format!(":{port}"))) {
        problems.push(format!("collector listens on {port} but publishes {published:?}"));
    }
    // Grafana's mounts exist, and the variables its data sources use are set.
    let grafana = &services["grafana"];
    for volume in strings(&grafana["volumes"]) {
        let source = volume.split(':').next().unwrap();
        if !compose_dir.join(source).exists() {
            problems.push(format!("grafana mounts {source}, which does not exist"));
        }
    }
    let datasources =
        std::fs::read_to_string(root().join("dashboards/grafana/provisioning/datasources/qoe-elasticsearch.yaml"))
            .unwrap();
    for variable in ["QOE_ES_URL", "QOE_ES_USERNAME", "QOE_ES_PASSWORD"] {
        assert!(datasources.contains(&format!("${{{variable}}}")));
        if grafana["environment"].get(variable).is_none() {
            problems.push(format!("grafana: the data sources use {variable}, which is not set"));
        }
    }
    // Kibana's saved objects are imported from the file the dashboards suite checks.
    let setup = &services["kibana-setup"];
    let mounted = strings(&setup["volumes"]);
    if !mounted.iter().any(|volume| {
        let source = volume.split(':').next().unwrap();
        source.ends_with("dashboards/kibana/qoe-saved-objects.ndjson") && compose_dir.join(source).is_file()
    }) {
        problems.push(format!("kibana-setup does not mount the saved objects: {mounted:?}"));
    }
    if !strings(&setup["command"])
        .concat()
        .contains("/api/saved_objects/_import")
    {
        problems.push("kibana-setup does not call the import API".to_string());
    }
    // The batch job's warehouse is a volume.
    if !strings(&services["batch"]["volumes"])
        .iter()
        .any(|volume| volume.ends_with(":/warehouse"))
    {
        problems.push("batch: /warehouse is not a volume".to_string());
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every object of the manifests under `dir` and its kustomization's resources.
fn manifests(dir: &Path) -> (Value, Vec<Value>) {
    let kustomization = yaml(&dir.join("kustomization.yaml")).remove(0);
    let mut objects = Vec::new();
    for resource in strings(&kustomization["resources"]) {
        let path = dir.join(&resource);
        assert!(path.is_file(), "{}: resource {resource} is missing", dir.display());
        objects.extend(yaml(&path));
    }
    (kustomization, objects)
}

#[test]
#[ignore = "needs QOE_YAML_PYTHON, a Python with PyYAML (scripts/test.sh installs one)"]
fn the_kubernetes_manifests_run_commands_the_binary_accepts_and_select_their_pods() {
    let k8s = root().join("deploy/k8s");
    let (kustomization, mut objects) = manifests(&k8s);
    let (arroyo_kustomization, arroyo_objects) = manifests(&k8s.join("arroyo"));
    objects.extend(arroyo_objects);
    for kustomization in [&kustomization, &arroyo_kustomization] {
        assert_eq!(kustomization["images"][0]["name"], "qoe-pipeline");
        assert!(kustomization["images"][0]["newTag"].is_string());
    }
    // The environment every qoe container gets: the ConfigMap, and placeholders for the Secrets.
    let mut env: BTreeMap<String, String> = objects
        .iter()
        .find(|object| object["kind"] == "ConfigMap" && object["metadata"]["name"] == "qoe-config")
        .expect("the qoe-config ConfigMap")["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_string()))
        .collect();
    for (key, value) in [
        ("QOE_ES_USERNAME", "qoe"),
        ("QOE_ES_PASSWORD", "secret"),
        ("QOE_WRITE_KEYS", "web:0123456789abcdef"),
    ] {
        env.insert(key.to_string(), value.to_string());
    }

    let mut problems = Vec::new();
    let mut commands = 0;
    for object in &objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let template = match kind {
            "Deployment" | "Job" | "StatefulSet" => &object["spec"]["template"],
            _ => continue,
        };
        if kind == "Deployment" {
            let selector = object["spec"]["selector"]["matchLabels"].as_object().unwrap();
            for (key, value) in selector {
                if &template["metadata"]["labels"][key] != value {
                    problems.push(format!("{kind} {name}: selector {key}={value} does not match its pods"));
                }
            }
        }
        for container in template["spec"]["containers"].as_array().into_iter().flatten() {
            let image = container["image"].as_str().unwrap_or_default();
            if image != "qoe-pipeline" {
                if !pinned(image) {
                    problems.push(format!("{kind} {name}: image {image:?} is not pinned"));
                }
                continue;
            }
            let args: Vec<String> = strings(&container["args"])
                .iter()
                .map(|arg| expand(arg, &env))
                .collect();
            if args.iter().any(|arg| arg.contains("$(")) {
                problems.push(format!("{kind} {name}: an unset $(VAR) in {args:?}"));
            }
            commands += 1;
            if let Some(error) = refused(&args, &env) {
                problems.push(format!("{kind} {name}: `qoe {}` is refused: {error}", args.join(" ")));
            }
            // The collector listens on the port its container declares.
            if let Some(at) = args.iter().position(|arg| arg == "--listen") {
                let port: u64 = args[at + 1].rsplit_once(':').unwrap().1.parse().unwrap();
                if container["ports"][0]["containerPort"].as_u64() != Some(port) {
                    problems.push(format!(
                        "{kind} {name}: listens on {port}, declares {}",
                        container["ports"]
                    ));
                }
            }
        }
    }
    assert!(commands >= 6, "{commands} qoe containers");
    // Each Service selects pods of a Deployment, on a port those pods name.
    for service in objects.iter().filter(|object| object["kind"] == "Service") {
        let selector = &service["spec"]["selector"];
        let pods = objects.iter().find(|object| {
            object["kind"] == "Deployment"
                && selector
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(key, value)| &object["spec"]["template"]["metadata"]["labels"][key] == value)
        });
        let Some(pods) = pods else {
            problems.push(format!(
                "Service {}: selects no Deployment",
                service["metadata"]["name"]
            ));
            continue;
        };
        for port in service["spec"]["ports"].as_array().unwrap() {
            let target = &port["targetPort"];
            let named = pods["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|declared| &declared["name"] == target || &declared["containerPort"] == target);
            if !named {
                problems.push(format!(
                    "Service {}: targetPort {target} is not a port of its pods",
                    service["metadata"]["name"]
                ));
            }
        }
    }
    // The autoscaler scales a Deployment that exists.
    for autoscaler in objects
        .iter()
        .filter(|object| object["kind"] == "HorizontalPodAutoscaler")
    {
        let target = &autoscaler["spec"]["scaleTargetRef"]["name"];
        if !objects
            .iter()
            .any(|object| object["kind"] == "Deployment" && &object["metadata"]["name"] == target)
        {
            problems.push(format!(
                "HorizontalPodAutoscaler scales {target}, which is not a Deployment here"
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_builder_image_uses_the_pinned_toolchain() {
    let toolchain = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
    let channel = toolchain
        .lines()
        .find_map(|line| line.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("FROM rust:{channel}-")),
        "the Dockerfile's builder is not rust:{channel}"
    );
}

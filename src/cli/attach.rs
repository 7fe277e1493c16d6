//! `ruststack attach`, the client: asks a running server (over HTTP, `/_ruststack/attach`)
//! for a Runtime API endpoint of a function's own, runs the given runtime command against it,
//! and holds the attachment open until the runtime exits.
//!
//! With `--debug` it builds that command itself: the function's own runtime under a real
//! debugger (the engine's debugger modes, `engine::debug`): RustStack's bundled Python
//! client under debugpy, its Node.js client under `--inspect-brk`, or a custom runtime's
//! `./bootstrap` with its environment printed for the user's own debugger.
//!
//! In every form (`-- CMD`, `--print-env`, `--debug`) the function's layers are on the
//! runtime's paths, as in a subprocess environment. The function is the one of `--region`
//! (else AWS_REGION, AWS_DEFAULT_REGION, else the server's default region).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::config::AttachArgs;
use crate::engine::LayerPaths;
use crate::engine::debug::{self, Debugger};

/// The runtime command `--debug` starts, with what it adds to the environment.
struct DebugRun {
    command: Vec<String>,
    env: Vec<(String, String)>,
    /// Shown once the runtime runs (`{pid}` is its process id).
    note: String,
    /// Whether the environment is printed (custom runtimes: for the user's own debugger).
    print_env: bool,
}

/// Writes the bundled client for `runtime` to a per-user directory (blocking).
fn bundled_client(runtime: Option<&str>) -> Result<Option<PathBuf>, String> {
    let Some((name, source)) = debug::bundled_client(runtime) else { return Ok(None) };
    // SAFETY: getuid has no failure mode and touches no memory.
    let uid = unsafe { libc::getuid() };
    let path = std::env::temp_dir().join(format!("ruststack-attach-{uid}")).join(name);
    crate::aws::fs::write_if_changed(&path, source.as_bytes())
        .map_err(|e| format!("cannot write the runtime client to {}: {e}", path.display()))?;
    Ok(Some(path))
}

/// The major version of `node` ("" when it cannot be asked; blocking).
fn node_major(node: &str) -> String {
    std::process::Command::new(node)
        .args(["-e", "process.stdout.write(process.versions.node.split('.')[0])"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// What the function's layers add to the runtime's environment, as in a subprocess
/// environment (each layer directory stands for /opt): PATH and LD_LIBRARY_PATH for every
/// runtime; for Python the layer roots for the bundled client (it puts their `python` dirs on
/// sys.path) and, for any other client (awslambdaric), those dirs on PYTHONPATH; NODE_PATH's
/// module directories for Node.js, then `node_after` (blocking: looks at the layers, may ask
/// Node.js its version).
fn layer_env(
    runtime: Option<&str>,
    layers: &[PathBuf],
    cwd: &std::path::Path,
    node: &str,
    node_after: &[String],
) -> Vec<(String, String)> {
    let debugger = Debugger::for_runtime(runtime);
    let major = if debugger == Debugger::Inspector && !layers.is_empty() { node_major(node) } else { String::new() };
    let paths = LayerPaths::new(layers, &major);
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let ld = std::env::var("LD_LIBRARY_PATH").ok();
    let mut env = vec![
        ("PATH".to_string(), paths.path(&path)),
        ("LD_LIBRARY_PATH".to_string(), paths.ld_library_path(cwd, ld.as_deref())),
    ];
    match debugger {
        Debugger::Debugpy => {
            let version = runtime.unwrap_or("").trim_start_matches("python");
            if !layers.is_empty() {
                env.push(("_RUSTSTACK_LAYER_DIRS".into(), paths.roots.to_string_lossy().into_owned()));
                // As the bundled client orders them: every layer's site-packages, then every
                // layer's python, then what PYTHONPATH held.
                let roots: Vec<&PathBuf> = layers.iter().rev().collect();
                let site =
                    roots.iter().map(|r| r.join("python/lib").join(format!("python{version}")).join("site-packages"));
                let dirs = site.chain(roots.iter().map(|r| r.join("python"))).filter(|d| d.is_dir());
                let rest = std::env::var("PYTHONPATH").ok();
                let mut parts: Vec<String> = dirs.map(|d| d.display().to_string()).collect();
                parts.extend(rest.filter(|r| !r.is_empty()));
                if !parts.is_empty() {
                    env.push(("PYTHONPATH".into(), parts.join(":")));
                }
            }
            env.push(("_RUSTSTACK_PYTHON_VERSION".into(), version.to_string()));
        }
        Debugger::Inspector => {
            let mut node_path: Vec<String> = paths.node_modules.iter().map(|d| d.display().to_string()).collect();
            node_path.extend(node_after.iter().cloned());
            if !node_path.is_empty() {
                env.push(("NODE_PATH".into(), node_path.join(":")));
            }
        }
        Debugger::Own | Debugger::Image => {}
    }
    env
}

/// The function's own runtime under a debugger (blocking: writes files, asks Python).
/// `layers` are the function's layer directories; with `--print-env` a custom runtime
/// needs no ./bootstrap here, since the user starts it.
fn debug_run(
    args: &AttachArgs,
    runtime: Option<&str>,
    layers: &[PathBuf],
    cwd: &std::path::Path,
) -> Result<DebugRun, String> {
    let debugger = Debugger::for_runtime(runtime);
    let port = args.debug_port.unwrap_or(debugger.default_port());
    let listen = format!("127.0.0.1:{port}");
    let client = bundled_client(runtime)?;
    let client_str = client.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let runtime_dir = client.as_ref().and_then(|p| p.parent()).map(|d| d.display().to_string()).unwrap_or_default();
    let node_after = [runtime_dir.clone(), cwd.display().to_string()];
    let mut env = layer_env(runtime, layers, cwd, &args.node, &node_after);
    let runtime = runtime.unwrap_or("");
    match debugger {
        Debugger::Debugpy => {
            debug::find_debugpy(&args.python)?;
            let mut command = vec![args.python.clone(), "-u".into(), "-X".into(), "utf8".into()];
            command.extend(debug::debugpy_args(None, &listen, &client_str));
            env.push(("LAMBDA_RUNTIME_DIR".into(), runtime_dir));
            Ok(DebugRun {
                command,
                env,
                note: format!(
                    "debugpy listens on {listen}: attach your IDE (VS Code: a \"Python Debugger: Remote Attach\" \
                     configuration on port {port}); the first invocation waits for it"
                ),
                print_env: false,
            })
        }
        Debugger::Inspector => {
            let command = vec![
                args.node.clone(),
                debug::inspect_flag(&listen),
                "--expose-gc".into(),
                "--max-http-header-size".into(),
                "81920".into(),
                client_str,
            ];
            env.push(("LAMBDA_RUNTIME_DIR".into(), runtime_dir));
            Ok(DebugRun {
                command,
                env,
                note: format!(
                    "the Node.js inspector listens on {listen}: attach your debugger (VS Code: an \"attach\" \
                     configuration on port {port}, or chrome://inspect); the runtime waits for it"
                ),
                print_env: false,
            })
        }
        Debugger::Own | Debugger::Image => {
            // Where AWS looks: the code (here, this directory), then the layers (/opt).
            let bootstrap = std::iter::once(cwd.join("bootstrap"))
                .chain(layers.iter().rev().map(|d| d.join("bootstrap")))
                .find(|p| p.is_file());
            let command = match bootstrap {
                Some(b) => vec![b.display().to_string()],
                None if args.print_env => Vec::new(),
                None => {
                    return Err(format!(
                        "{runtime}: no ./bootstrap in {} (nor in the function's layers): run this where the \
                         function's built bootstrap is (e.g. cargo lambda build's output), or use --print-env \
                         and start it under your debugger",
                        cwd.display()
                    ));
                }
            };
            Ok(DebugRun {
                command,
                env,
                note: "./bootstrap runs as pid {pid}: attach your debugger to it (gdb -p {pid}, lldb -p {pid}); \
                       or start it under one yourself with the environment above (--debug --print-env)"
                    .into(),
                print_env: true,
            })
        }
    }
}

pub async fn run(args: AttachArgs) -> Result<u8, String> {
    if args.command.is_empty() && !args.print_env && !args.debug {
        return Err("give the runtime command after `--` (or use --print-env or --debug)".into());
    }
    // Ctrl-C detaches: the handler is in place before anything is printed, so an interrupt
    // that follows the printed environment at once still detaches cleanly.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    let base = args.endpoint.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let fname = percent_encoding::utf8_percent_encode(&args.function, percent_encoding::NON_ALPHANUMERIC).to_string();
    // As the AWS CLI picks it; none: the server's default region.
    let region = args
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .filter(|r| !r.is_empty());
    // `&region=R` on every request's query (after `id`).
    let rq = region
        .as_deref()
        .map(|r| format!("&region={}", percent_encoding::utf8_percent_encode(r, percent_encoding::NON_ALPHANUMERIC)))
        .unwrap_or_default();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    let resp = client
        .post(format!("{base}/_ruststack/attach/{fname}?{}", rq.trim_start_matches('&')))
        .json(&json!({"keep_timeout": args.keep_timeout, "cwd": cwd}))
        .send()
        .await
        .map_err(|e| format!("cannot reach RustStack at {base}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| format!("bad answer from RustStack: {e}"))?;
    if !status.is_success() {
        let msg = body.get("message").or_else(|| body.get("Message")).and_then(Value::as_str).unwrap_or("");
        return Err(format!("attach refused ({status}): {msg}"));
    }
    let id = body["id"].as_str().unwrap_or_default().to_string();
    let runtime_api = body["runtime_api"].as_str().unwrap_or_default().to_string();
    let mut env: Vec<(String, String)> = body["env"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();

    let mut command = args.command.clone();
    let mut note = String::new();
    let mut print_env = args.print_env;
    let runtime = body["runtime"].as_str().map(str::to_string);
    let layers: Vec<PathBuf> = body["layers"]
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_str).map(PathBuf::from).collect())
        .unwrap_or_default();
    if !args.debug {
        // The layers' paths, where the function's own variables set none (as in a subprocess
        // environment, where those come last).
        let (node, dir) = (args.node.clone(), PathBuf::from(&cwd));
        let added = tokio::task::spawn_blocking(move || {
            layer_env(runtime.as_deref(), &layers, &dir, &node, &[dir.display().to_string()])
        })
        .await
        .unwrap_or_default();
        for (k, v) in added {
            if !env.iter().any(|(ek, _)| *ek == k) {
                env.push((k, v));
            }
        }
    } else {
        let (a, dir) = (args.clone(), PathBuf::from(&cwd));
        let run = tokio::task::spawn_blocking(move || debug_run(&a, runtime.as_deref(), &layers, &dir))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let run = match run {
            Ok(r) => r,
            Err(why) => {
                let _ = client.delete(format!("{base}/_ruststack/attach/{fname}?id={id}{rq}")).send().await;
                return Err(why);
            }
        };
        // What the debugged runtime adds replaces the attachment's own (PATH, LAMBDA_RUNTIME_DIR).
        env.retain(|(k, _)| !run.env.iter().any(|(rk, _)| rk == k));
        env.extend(run.env);
        print_env |= run.print_env;
        command = run.command;
        note = run.note;
    }
    // Printed once, whichever of --print-env and --debug asked for it.
    if print_env {
        for (k, v) in &env {
            println!("{k}={v}");
        }
    }

    // Hold the attachment open: if this process dies, the server notices and detaches.
    let hold_url = format!("{base}/_ruststack/attach/{fname}/hold?id={id}{rq}");
    let hold_client = client.clone();
    let hold = tokio::spawn(async move { hold_client.get(hold_url).send().await.map(|_| ()) });

    eprintln!(
        "ruststack attach: {} attached (runtime API {runtime_api}, timeout {})",
        args.function,
        if args.keep_timeout { "kept" } else { "suspended" }
    );
    let code = if args.print_env {
        if args.debug && !command.is_empty() {
            eprintln!("ruststack attach: start the runtime with the environment above: {}", command.join(" "));
        }
        eprintln!("ruststack attach: holding the attachment; press Ctrl-C to detach");
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = hold => { eprintln!("ruststack attach: the server ended the attachment"); }
        }
        0
    } else {
        let mut cmd = tokio::process::Command::new(&command[0]);
        cmd.args(&command[1..]).envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = client.delete(format!("{base}/_ruststack/attach/{fname}?id={id}{rq}")).send().await;
                return Err(format!("cannot run {}: {e}", command[0]));
            }
        };
        eprintln!("ruststack attach: running {command:?}; invocations of {} now go to it", args.function);
        if !note.is_empty() {
            let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
            eprintln!("ruststack attach: {}", note.replace("{pid}", &pid));
        }
        let code = tokio::select! {
            s = child.wait() => s.ok().and_then(|s| s.code()).unwrap_or(1),
            _ = interrupt.recv() => {
                let _ = child.kill().await;
                130
            }
        };
        eprintln!("ruststack attach: runtime exited ({code}); detaching");
        code
    };
    let _ = client.delete(format!("{base}/_ruststack/attach/{fname}?id={id}{rq}")).send().await;
    Ok(code.clamp(0, 255) as u8)
}

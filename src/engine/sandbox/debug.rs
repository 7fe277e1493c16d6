//! Debugger modes: how a runtime starts under a real debugger, for `ruststack attach --debug`
//! (the client runs it) and `--lambda-debug FN[=PORT]` (the subprocess and docker sandboxes do).
//!
//! - Python: the runtime client under debugpy (`-m debugpy --listen ADDR --wait-for-client`):
//!   nothing runs until the IDE attaches, so breakpoints set before the first invocation hold.
//! - Node.js: the runtime client under `node --inspect-brk=ADDR`: it waits for a debugger too
//!   (it stops on the client's first line; IDEs continue from there, `continueOnAttach`).
//! - `provided.*`: the function's own bootstrap, unchanged; the user brings the debugger, and
//!   the function's log says where the runtime is. Timeouts are suspended and one environment
//!   is kept, as for the others.
//! - Image functions: [`WRAPPER`] picks debugpy or the inspector by the interpreter the image's
//!   runtime command starts (when the image honours `AWS_LAMBDA_EXEC_WRAPPER`), else as `provided.*`.
//!
//! In a container the image's runtime command is wrapped through `AWS_LAMBDA_EXEC_WRAPPER`
//! (which the Lambda images' bootstrap honours, and so do RustStack's): [`WRAPPER`] adds the
//! debugger's arguments, and debugpy comes from the host, bind-mounted read-only.

use std::path::{Path, PathBuf};

/// The port a debugger listens on when none is given.
pub const PYTHON_PORT: u16 = 5678;
pub const NODE_PORT: u16 = 9229;

/// Where debugpy and the wrapper are mounted in a container.
pub const CONTAINER_DIR: &str = "/var/ruststack-debug";

/// What `--lambda-debug` asks of one function's environments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugSpec {
    /// The debugger's port; None: the runtime's default ([`PYTHON_PORT`], [`NODE_PORT`]).
    pub port: Option<u16>,
}

impl DebugSpec {
    /// The port for a function of `runtime` (0 for runtimes that bring their own debugger).
    pub fn port_for(&self, runtime: Option<&str>) -> u16 {
        self.port.unwrap_or_else(|| Debugger::for_runtime(runtime).default_port())
    }
}

/// Which debugger a runtime starts under.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Debugger {
    /// Python's debugpy (Debug Adapter Protocol over TCP).
    Debugpy,
    /// Node's inspector (Chrome DevTools Protocol over a WebSocket).
    Inspector,
    /// Custom runtimes: the user's own debugger (gdb, lldb, ...).
    Own,
    /// An Image function: debugpy or the inspector when the image's runtime command (seen
    /// through `AWS_LAMBDA_EXEC_WRAPPER`) starts Python or Node.js, else the user's own.
    Image,
}

impl Debugger {
    pub fn for_runtime(runtime: Option<&str>) -> Debugger {
        match runtime.unwrap_or("") {
            r if r.starts_with("python") => Debugger::Debugpy,
            r if r.starts_with("nodejs") => Debugger::Inspector,
            _ => Debugger::Own,
        }
    }

    /// The debugger of a function: [`Debugger::Image`] for Image functions (they declare no
    /// runtime), else by runtime.
    pub fn for_function(runtime: Option<&str>, image: bool) -> Debugger {
        if image { Debugger::Image } else { Debugger::for_runtime(runtime) }
    }

    /// 0 where the port is not known before the runtime starts.
    pub fn default_port(self) -> u16 {
        match self {
            Debugger::Debugpy => PYTHON_PORT,
            Debugger::Inspector => NODE_PORT,
            Debugger::Own | Debugger::Image => 0,
        }
    }

    /// What the user attaches with, for log lines.
    pub fn describe(self) -> &'static str {
        match self {
            Debugger::Debugpy => "debugpy (Debug Adapter Protocol)",
            Debugger::Inspector => "the Node.js inspector (Chrome DevTools Protocol)",
            Debugger::Own => "your own debugger",
            Debugger::Image => "debugpy or the Node.js inspector, by the image's interpreter",
        }
    }

    /// The wrapper's name for it (`_RUSTSTACK_DEBUGGER`).
    fn tag(self) -> &'static str {
        match self {
            Debugger::Debugpy => "debugpy",
            Debugger::Inspector => "inspector",
            Debugger::Own => "own",
            Debugger::Image => "auto",
        }
    }
}

/// What the function's log (and the server's) says when RustStack starts no debugger itself:
/// a custom runtime, or an Image function (whose wrapper may start one). `target` names the
/// runtime's process ("pid 123", "container abc"), `runtime_api` its Runtime API address,
/// `port` the port given with `--lambda-debug FN=PORT`.
pub fn own_debugger_note(
    debugger: Debugger,
    runtime: Option<&str>,
    port: Option<u16>,
    target: &str,
    runtime_api: &str,
) -> String {
    let keep = "this environment is kept and its timeout suspended";
    let how = if let Some(pid) = target.strip_prefix("pid ") {
        format!("attach your debugger to it: gdb -p {pid}, lldb -p {pid} (or rust-gdb / rust-lldb)")
    } else {
        let id = target.strip_prefix("container ").unwrap_or(target);
        format!(
            "attach your debugger to it: gdb -p $(docker inspect -f '{{{{.State.Pid}}}}' {id}) from the host, \
             or a gdbserver / lldb-server of the image's own through docker exec {id}"
        )
    };
    match debugger {
        Debugger::Image => format!(
            "RustStack --lambda-debug: {keep}. Image function: if its runtime starts through \
             AWS_LAMBDA_EXEC_WRAPPER (the Lambda base images' and RustStack's do), a Python runtime starts under \
             debugpy (port {py}) and a Node.js one under the inspector (port {node}), and a line of this log says \
             so; otherwise no debugger is started: the runtime ({target}) serves the Runtime API at {runtime_api}; \
             {how}\n",
            py = port.unwrap_or(PYTHON_PORT),
            node = port.unwrap_or(NODE_PORT),
        ),
        _ => format!(
            "RustStack --lambda-debug: {keep}. {} starts no debugger of RustStack's: its bootstrap ({target}) \
             serves the Runtime API at {runtime_api}; {how}. To start it under a debugger yourself, use \
             `ruststack attach FUNCTION --debug --print-env` instead\n",
            runtime.unwrap_or("a custom runtime")
        ),
    }
}

/// Interpreter arguments that run `script` under debugpy listening on `listen`, waiting for
/// the IDE. `debugpy` is `-m debugpy`, or the path of a debugpy package directory.
pub fn debugpy_args(debugpy: Option<&str>, listen: &str, script: &str) -> Vec<String> {
    // Frozen standard modules (3.11+) can make debugpy miss breakpoints; it warns without this.
    let mut v: Vec<String> = vec!["-Xfrozen_modules=off".into()];
    match debugpy {
        Some(dir) => v.push(dir.to_string()),
        None => v.extend(["-m".into(), "debugpy".into()]),
    }
    v.extend(["--listen".into(), listen.to_string(), "--wait-for-client".into(), script.to_string()]);
    v
}

/// The node flag that opens the inspector on `listen` and waits for a debugger.
pub fn inspect_flag(listen: &str) -> String {
    format!("--inspect-brk={listen}")
}

/// How to install debugpy for `python`.
pub fn debugpy_hint(python: &str) -> String {
    format!(
        "debugpy is not installed for {python}: install it with `{python} -m pip install debugpy` \
         (or `pip install debugpy` in the virtualenv you run), or choose another interpreter with --python"
    )
}

/// The directory of the debugpy package `python` imports, or how to install it. Blocking
/// (runs the interpreter): call from a blocking context.
pub fn find_debugpy(python: &str) -> Result<PathBuf, String> {
    let out = std::process::Command::new(python)
        .args(["-c", "import os, debugpy; print(os.path.dirname(os.path.abspath(debugpy.__file__)))"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !dir.is_empty() && Path::new(&dir).join("__main__.py").is_file() {
        Ok(PathBuf::from(dir))
    } else {
        Err(debugpy_hint(python))
    }
}

/// The bundled runtime client for `runtime`: its file name and source (None for runtimes
/// that run their own bootstrap).
pub fn bundled_client(runtime: Option<&str>) -> Option<(&'static str, &'static str)> {
    match Debugger::for_runtime(runtime) {
        Debugger::Debugpy => Some(("bootstrap.py", super::subprocess::PYTHON_BOOTSTRAP)),
        Debugger::Inspector => Some(("bootstrap.js", super::subprocess::NODE_BOOTSTRAP)),
        Debugger::Own | Debugger::Image => None,
    }
}

/// The `AWS_LAMBDA_EXEC_WRAPPER` of a debugged container: it gets the image's runtime
/// command (interpreter first) and runs it with the debugger's arguments, through the
/// function's own wrapper if it has one. `auto` (Image functions) picks the debugger by the
/// interpreter's name; debugpy is the host's (mounted) or else the image's own.
pub const WRAPPER: &str = r#"#!/bin/sh
# RustStack --lambda-debug: runs the runtime command ("$@", interpreter first) under a debugger.
host="$_RUSTSTACK_DEBUG_HOST"
port="$_RUSTSTACK_DEBUG_PORT"
debugger="$_RUSTSTACK_DEBUGGER"
wrapper="$_RUSTSTACK_EXEC_WRAPPER"
unset _RUSTSTACK_DEBUG_HOST _RUSTSTACK_DEBUG_PORT _RUSTSTACK_DEBUGGER _RUSTSTACK_EXEC_WRAPPER
if [ -n "$wrapper" ]; then export AWS_LAMBDA_EXEC_WRAPPER="$wrapper"; else unset AWS_LAMBDA_EXEC_WRAPPER; fi
prog="$1"
shift
if [ "$debugger" = auto ]; then
  case "${prog##*/}" in
    python*) debugger=debugpy ;;
    node*) debugger=inspector ;;
    *) debugger=own
       echo "RustStack --lambda-debug: the image's runtime command ($prog) is neither Python nor Node.js: no debugger started; attach your own to pid $$" 1>&2 ;;
  esac
fi
case "$debugger" in
  debugpy)
    listen="$host:${port:-5678}"
    if [ -f /var/ruststack-debug/debugpy/__main__.py ]; then
      echo "RustStack: debugpy listening on $listen, waiting for the debugger to attach" 1>&2
      set -- "$prog" -Xfrozen_modules=off /var/ruststack-debug/debugpy --listen "$listen" --wait-for-client "$@"
    elif "$prog" -c 'import debugpy' 2>/dev/null; then
      echo "RustStack: debugpy (the image's) listening on $listen, waiting for the debugger to attach" 1>&2
      set -- "$prog" -Xfrozen_modules=off -m debugpy --listen "$listen" --wait-for-client "$@"
    else
      echo "RustStack --lambda-debug: no debugpy (neither the host's, for --python, nor the image's): the runtime starts without a debugger; pip install debugpy" 1>&2
      set -- "$prog" "$@"
    fi ;;
  inspector)
    listen="$host:${port:-9229}"
    echo "RustStack: the Node.js inspector listening on $listen, waiting for the debugger to attach" 1>&2
    set -- "$prog" "--inspect-brk=$listen" "$@" ;;
  *) set -- "$prog" "$@" ;;
esac
if [ -n "$wrapper" ]; then exec "$wrapper" "$@"; fi
exec "$@"
"#;

/// What a debugged container adds to its create body.
#[derive(Debug, Default)]
pub struct ContainerDebug {
    /// (host path, container path) read-only bind mounts.
    pub mounts: Vec<(PathBuf, String)>,
    pub env: Vec<(String, String)>,
    /// The container ports to publish on the host's loopback (bridge network).
    pub publish: Vec<u16>,
}

/// The mounts, variables and published ports of a debugged container. `wrapper` is the
/// [`WRAPPER`] file on the host, `debugpy` the host's debugpy package (Python: mounted at
/// `CONTAINER_DIR/debugpy`, which the wrapper runs), `bridge` whether the container has its own network
/// (then it listens on 0.0.0.0 inside and the port is published on 127.0.0.1). An Image
/// function without a port given publishes both default ports: which one listens is known
/// once its runtime starts.
pub fn container_debug(
    spec: &DebugSpec,
    debugger: Debugger,
    function_env: &std::collections::BTreeMap<String, String>,
    wrapper: &Path,
    debugpy: Option<&Path>,
    bridge: bool,
) -> ContainerDebug {
    if debugger == Debugger::Own {
        return ContainerDebug::default();
    }
    let port = spec.port.unwrap_or(debugger.default_port());
    let mut out = ContainerDebug::default();
    if bridge {
        out.publish = if port == 0 { vec![PYTHON_PORT, NODE_PORT] } else { vec![port] };
    }
    out.mounts.push((wrapper.to_path_buf(), format!("{CONTAINER_DIR}/wrapper")));
    if let Some(d) = debugpy {
        out.mounts.push((d.to_path_buf(), format!("{CONTAINER_DIR}/debugpy")));
    }
    let host = if bridge { "0.0.0.0" } else { "127.0.0.1" };
    out.env.push(("AWS_LAMBDA_EXEC_WRAPPER".into(), format!("{CONTAINER_DIR}/wrapper")));
    out.env.push(("_RUSTSTACK_DEBUG_HOST".into(), host.into()));
    out.env.push(("_RUSTSTACK_DEBUG_PORT".into(), if port == 0 { String::new() } else { port.to_string() }));
    out.env.push(("_RUSTSTACK_DEBUGGER".into(), debugger.tag().into()));
    if let Some(w) = function_env.get("AWS_LAMBDA_EXEC_WRAPPER").filter(|w| !w.is_empty()) {
        out.env.push(("_RUSTSTACK_EXEC_WRAPPER".into(), w.clone()));
    }
    out
}

/// Gets a debugged container ready (blocking: writes the wrapper, asks `python` where its
/// debugpy is): what its create body adds, or why it cannot start. None when the runtime
/// brings its own debugger. An Image function starts without the host's debugpy when there
/// is none (the image may have its own; the wrapper says which it used).
pub fn prepare_container(
    spec: &DebugSpec,
    debugger: Debugger,
    function_env: &std::collections::BTreeMap<String, String>,
    dir: &Path,
    python: &str,
    bridge: bool,
) -> Result<Option<ContainerDebug>, String> {
    if debugger == Debugger::Own {
        return Ok(None);
    }
    let wrapper = dir.join("wrapper");
    crate::aws::fs::write_if_changed(&wrapper, WRAPPER.as_bytes())
        .and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| format!("cannot write the debug wrapper {}: {e}", wrapper.display()))?;
    let debugpy = match debugger {
        // Lambda images have no debugpy and no network to fetch it: the host's is mounted.
        Debugger::Debugpy => Some(find_debugpy(python).map_err(|why| {
            format!("{why}. RustStack mounts the host's debugpy (that of --python) into the container")
        })?),
        Debugger::Image => find_debugpy(python).ok(),
        _ => None,
    };
    Ok(Some(container_debug(spec, debugger, function_env, &wrapper, debugpy.as_deref(), bridge)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debugger_per_runtime() {
        assert_eq!(Debugger::for_runtime(Some("python3.12")), Debugger::Debugpy);
        assert_eq!(Debugger::for_runtime(Some("nodejs20.x")), Debugger::Inspector);
        assert_eq!(Debugger::for_runtime(Some("provided.al2023")), Debugger::Own);
        assert_eq!(Debugger::for_runtime(None), Debugger::Own);
        assert_eq!(DebugSpec { port: None }.port_for(Some("python3.11")), PYTHON_PORT);
        assert_eq!(DebugSpec { port: None }.port_for(Some("nodejs18.x")), NODE_PORT);
        assert_eq!(DebugSpec { port: Some(7000) }.port_for(Some("nodejs18.x")), 7000);
    }

    #[test]
    fn debugpy_command() {
        assert_eq!(
            debugpy_args(None, "127.0.0.1:5678", "/r/bootstrap.py"),
            [
                "-Xfrozen_modules=off",
                "-m",
                "debugpy",
                "--listen",
                "127.0.0.1:5678",
                "--wait-for-client",
                "/r/bootstrap.py"
            ]
        );
        assert_eq!(debugpy_args(Some("/d/debugpy"), "0.0.0.0:1", "b")[1], "/d/debugpy");
        assert_eq!(inspect_flag("127.0.0.1:9229"), "--inspect-brk=127.0.0.1:9229");
    }

    #[test]
    fn container_additions() {
        let mut env = std::collections::BTreeMap::new();
        let spec = DebugSpec { port: Some(6000) };
        let d = container_debug(&spec, Debugger::Debugpy, &env, Path::new("/w"), Some(Path::new("/dp")), true);
        assert_eq!(d.publish, [6000]);
        assert!(d.env.contains(&("_RUSTSTACK_DEBUG_HOST".into(), "0.0.0.0".into())));
        assert!(d.env.contains(&("_RUSTSTACK_DEBUG_PORT".into(), "6000".into())));
        assert_eq!(d.mounts.len(), 2);
        env.insert("AWS_LAMBDA_EXEC_WRAPPER".to_string(), "/opt/mine".to_string());
        let d = container_debug(&spec, Debugger::Inspector, &env, Path::new("/w"), None, false);
        assert!(d.publish.is_empty());
        assert!(d.env.contains(&("_RUSTSTACK_DEBUG_HOST".into(), "127.0.0.1".into())));
        assert!(d.env.contains(&("_RUSTSTACK_EXEC_WRAPPER".into(), "/opt/mine".into())));
        let d = container_debug(&spec, Debugger::Own, &env, Path::new("/w"), None, true);
        assert!(d.mounts.is_empty() && d.env.is_empty() && d.publish.is_empty());
        // An Image function: the wrapper picks the debugger; without a port, both defaults.
        let d = container_debug(&DebugSpec { port: None }, Debugger::Image, &env, Path::new("/w"), None, true);
        assert_eq!(d.publish, [PYTHON_PORT, NODE_PORT]);
        assert!(d.env.contains(&("_RUSTSTACK_DEBUGGER".into(), "auto".into())));
        assert!(d.env.contains(&("_RUSTSTACK_DEBUG_PORT".into(), String::new())));
    }

    #[test]
    fn own_debugger_notes() {
        let n = own_debugger_note(Debugger::Own, Some("provided.al2023"), None, "pid 42", "127.0.0.1:9001");
        assert!(n.contains("gdb -p 42") && n.contains("127.0.0.1:9001") && n.contains("provided.al2023"), "{n}");
        assert!(n.contains("timeout suspended") && n.ends_with('\n'), "{n}");
        let n = own_debugger_note(Debugger::Image, None, None, "container abc", "172.17.0.1:9001");
        assert!(n.contains("docker inspect -f '{{.State.Pid}}' abc") && n.contains("AWS_LAMBDA_EXEC_WRAPPER"), "{n}");
        assert!(n.contains("debugpy (port 5678)") && n.contains("inspector (port 9229)"), "{n}");
        let n = own_debugger_note(Debugger::Image, None, Some(7000), "container abc", "172.17.0.1:9001");
        assert!(n.contains("debugpy (port 7000)"), "{n}");
        assert_eq!(Debugger::for_function(Some("python3.11"), true), Debugger::Image);
        assert_eq!(Debugger::for_function(Some("python3.11"), false), Debugger::Debugpy);
    }
}

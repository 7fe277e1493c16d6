//! The default executor: each environment is a host process. `python3.x` functions run the
//! bundled bootstrap (runtime-api/python/bootstrap.py), forked from a pre-initialized
//! interpreter (see [`super::zygote`]) or, where that cannot work, exec'd; `nodejs*` functions the bundled
//! runtime-api/node/bootstrap.js on the host's `node`; `provided.*` functions, and any zip
//! with a `bootstrap`, run their own executable.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::process::Command;

use super::docker::output::PipeOutput;

use crate::aws::AwsError;
use crate::engine::logsink::LogSink;
use crate::engine::runtime_api::{Death, Endpoint};
use crate::engine::{EngineConfig, EnvSpec};

use super::cgroup::{EnvCgroup, MemoryCgroups, OomCount};
use super::zygote::{self, Zygotes};

/// The bundled Python runtime client, embedded so one file ships.
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../../runtime-api/python/bootstrap.py");
/// The bundled Node.js runtime client.
pub const NODE_BOOTSTRAP: &str = include_str!("../../../runtime-api/node/bootstrap.js");

/// Run once per server start (in the background) as `python3 -c PROBE bootstrap.py bootstrap.pyc`: prints the
/// interpreter's version and real path, then `compiled` if it compiled the bootstrap.
const PROBE: &str = "import sys
print('%d.%d' % sys.version_info[:2])
print(sys.executable)
try:
    import py_compile
    py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)
    print('compiled')
except Exception:
    pass
";

pub struct SubprocessExecutor {
    /// What the server-start work done off the way to ready found (see [`Startup`]).
    startup: Arc<Startup>,
    /// `--node` as given, and what asking it found (once, at the first nodejs function).
    node: String,
    /// Shared, so that a start can have the probe run on the blocking pool.
    node_found: Arc<std::sync::OnceLock<Option<HostNode>>>,
    node_bootstrap: PathBuf,
    bootstrap_path: PathBuf,
    warned: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Value of [`OWNER_VAR`] in every runtime this server starts: its runtime dir.
    owner: String,
    /// Where `python`'s debugpy is, once a `--lambda-debug` start has found it.
    debugpy: std::sync::OnceLock<PathBuf>,
    /// The fork servers, as in `startup` (None with `--python-fork false`).
    zygotes: Option<Arc<Zygotes>>,
    /// `--python-runtime`: declared version (`3.12`) → interpreter.
    python_runtimes: std::collections::HashMap<String, String>,
    /// Per declared version other than `--python`'s: the interpreter found for it (a
    /// mapping, or `python3.X` on PATH), or None; asked once.
    pythons: parking_lot::Mutex<std::collections::HashMap<String, Option<Arc<HostPython>>>>,
}

/// The work of a server start that is not on its way to ready: a thread does it, in this
/// order, while the listener already answers; environments wait for what they need of it.
#[derive(Default)]
struct Startup {
    /// Memory cgroups for `MemorySize` limits, where the host has them (set before `swept`).
    cgroups: std::sync::OnceLock<Option<Arc<MemoryCgroups>>>,
    /// Set once the leftovers of an earlier server on this data dir are stopped (before any
    /// runtime of ours starts: they carry the same marker).
    swept: std::sync::OnceLock<()>,
    /// Set once `--python` has been probed.
    main: std::sync::OnceLock<MainPython>,
    /// The fork servers (None with `--python-fork false`); `--python`'s is started here.
    zygotes: Option<Arc<Zygotes>>,
}

/// `--python`, as the probe found it.
struct MainPython {
    /// Its real path (or `--python` as given when it could not be asked).
    python: String,
    /// What it runs: the bootstrap compiled to a .pyc at server start, else the source.
    bootstrap_run: PathBuf,
    /// `X.Y` of the host interpreter, if it could be asked.
    version: Option<String>,
}

impl Startup {
    /// The memory cgroups, the sweep, then the probe of `--python` (blocking: runs on its own thread).
    fn run(&self, owner: &str, python: &str, bootstrap: &Path, compiled: &Path) {
        let cgroups = match MemoryCgroups::detect() {
            Ok(c) => {
                tracing::info!(cgroups = %c.describe(), "subprocess environments are limited to their MemorySize");
                Some(Arc::new(c))
            }
            Err(why) => {
                tracing::warn!(
                    "no memory cgroups ({why}): subprocess environments run without a MemorySize limit \
                     (--lambda-executor docker enforces it)"
                );
                None
            }
        };
        let _ = self.cgroups.set(cgroups);
        kill_leftovers(owner);
        let _ = self.swept.set(());
        let probed = probe_python(python, bootstrap, compiled);
        let version = probed.as_ref().map(|p| p.version.clone());
        if version.is_none() {
            tracing::warn!(python = %python, "no usable Python interpreter: python3.x functions will fail in subprocess mode");
        }
        let main = MainPython {
            python: probed.as_ref().map_or_else(|| python.to_string(), |p| p.path.clone()),
            bootstrap_run: probed.map_or_else(|| bootstrap.to_path_buf(), |p| p.bootstrap_run),
            version,
        };
        let prestart = self
            .zygotes
            .as_ref()
            .filter(|_| main.version.is_some())
            .map(|z| (z.clone(), main.python.clone(), main.bootstrap_run.clone()));
        let _ = self.main.set(main);
        if let Some((z, python, run)) = prestart
            && let Some(zygote) = z.get(&python, &run, bootstrap)
            && let Some(Some(cgroups)) = self.cgroups.get()
        {
            zygote.make_spare(|| cgroups.create_spare(SPARE_LIMIT));
        }
    }
}

/// Writes a bundled runtime file unless it already holds `bytes`: a temp file renamed into
/// place, with no fsync (two fsyncs were most of a server start on a busy disk). A file torn
/// by a crash differs from `bytes` and is written again at the next start.
fn write_runtime_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|have| have == bytes) {
        return Ok(());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("runtime");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A host Python interpreter: its version, real path, and the bootstrap compiled for it.
#[derive(Clone, Debug)]
struct HostPython {
    version: String,
    path: String,
    bootstrap_run: PathBuf,
}

/// Asks `python` for its version and real path (shims such as pyenv's cost ~0.5 s per start)
/// and has it compile the bootstrap to `compiled` (several ms per cold start otherwise).
/// None when it cannot run. Blocking.
fn probe_python(python: &str, bootstrap: &Path, compiled: &Path) -> Option<HostPython> {
    let _ = std::fs::remove_file(compiled);
    let out = std::process::Command::new(python)
        .args(["-c", PROBE])
        .arg(bootstrap)
        .arg(compiled)
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let version = lines.next().filter(|v| !v.is_empty())?.to_string();
    let path = lines.next().filter(|p| !p.is_empty()).unwrap_or(python).to_string();
    let bootstrap_run = if lines.next() == Some("compiled") && compiled.is_file() {
        compiled.to_path_buf()
    } else {
        bootstrap.to_path_buf()
    };
    Some(HostPython { version, path, bootstrap_run })
}

/// The host's Node.js: its major version and real path.
#[derive(Clone, Debug)]
struct HostNode {
    major: String,
    path: String,
}

/// Asks `node` for its version and real path. None when it cannot run. Blocking.
fn probe_node(node: &str) -> Option<HostNode> {
    let out = std::process::Command::new(node)
        .args(["-e", "process.stdout.write(process.versions.node + '\\n' + process.execPath)"])
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (version, path) = text.split_once('\n')?;
    let major = version.split('.').next()?.to_string();
    tracing::info!(node = %path, version, "Node.js for nodejs functions in subprocess mode");
    Some(HostNode { major, path: path.to_string() })
}

/// Marks a runtime, and whatever it starts, as this data dir's, so that leftovers of a
/// server killed with -9 can be found and stopped when the next one starts.
const OWNER_VAR: &str = "_RUSTSTACK_OWNER";

/// What a function's layers add to a host runtime's search paths, each layer root standing
/// for /opt. The last layer comes first: AWS extracts it last, over the others.
#[derive(Debug, Default)]
pub struct LayerPaths {
    /// Each layer's `bin`, for PATH.
    pub bin: Vec<PathBuf>,
    /// Each layer's `lib`, for LD_LIBRARY_PATH.
    pub lib: Vec<PathBuf>,
    /// Each layer's `nodejs/nodeNN/node_modules` and `nodejs/node_modules`, for NODE_PATH.
    pub node_modules: Vec<PathBuf>,
    /// The roots, `:`-separated: the bundled Python client's `_RUSTSTACK_LAYER_DIRS`
    /// (it puts each one's `python` and `python/lib/pythonX.Y/site-packages` on sys.path).
    pub roots: std::ffi::OsString,
}

impl LayerPaths {
    /// The paths of `layers` (in the function's order); `node_major` is the Node.js major
    /// version that runs them ("" for other runtimes).
    pub fn new(layers: &[PathBuf], node_major: &str) -> LayerPaths {
        let mut out =
            LayerPaths { roots: std::env::join_paths(layers.iter().rev()).unwrap_or_default(), ..Default::default() };
        for layer in layers.iter().rev() {
            out.bin.push(layer.join("bin"));
            out.lib.push(layer.join("lib"));
            if !node_major.is_empty() {
                out.node_modules.push(layer.join("nodejs").join(format!("node{node_major}")).join("node_modules"));
            }
            out.node_modules.push(layer.join("nodejs").join("node_modules"));
        }
        out
    }

    /// PATH: the layers' `bin`, then `rest`.
    pub fn path(&self, rest: &str) -> String {
        join(self.bin.iter().map(|d| d.display().to_string()).chain(Some(rest.to_string())))
    }

    /// LD_LIBRARY_PATH: the code's `lib`, the layers' `lib`, then `rest`.
    pub fn ld_library_path(&self, code_dir: &Path, rest: Option<&str>) -> String {
        let dirs = Some(code_dir.join("lib")).into_iter().chain(self.lib.iter().cloned());
        join(dirs.map(|d| d.display().to_string()).chain(rest.map(str::to_string)))
    }
}

fn join(parts: impl Iterator<Item = String>) -> String {
    parts.filter(|p| !p.is_empty()).collect::<Vec<_>>().join(":")
}

/// A running host process (its own process group).
pub struct Process {
    pid: i32,
    exited: Arc<AtomicBool>,
    /// The one pipe the runtime's stdout and stderr share, into the environment's log.
    output: Option<PipeOutput>,
    /// The highest peak RSS of the process tree seen so far, in bytes (kept once it exits;
    /// the waiter adds the runtime's own peak at its exit).
    peak: Arc<AtomicU64>,
    /// The runtime's `/proc/<pid>/status`, kept open and re-read after every invocation for
    /// its VmHWM: one read of kernel memory, no open, no path walk.
    status: Option<std::fs::File>,
    /// Where `status`'s VmHWM line was last found (see [`own_peak_bytes`]).
    hwm_at: AtomicUsize,
    /// When the whole process tree was last walked: the children are summed in at most once
    /// per [`TREE_WALK_EVERY`] (walking `/proc/*/task/*/children` on every warm invoke doubled
    /// the server's CPU per invoke).
    tree_walked: parking_lot::Mutex<Option<std::time::Instant>>,
    /// The OOM kills in the environment's memory cgroup (none without one), shared with
    /// the waiter, so that each kill is reported once: by the invocation it failed, or by
    /// the runtime's death.
    oom: Option<Arc<OomCount>>,
    /// A forked runtime's pidfd (it is the fork server's child, not ours).
    pidfd: Option<Arc<OwnedFd>>,
}

/// How often the peak of a runtime's child processes is refreshed (its own peak is read
/// after every invocation).
const TREE_WALK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl SubprocessExecutor {
    pub fn new(cfg: &EngineConfig) -> std::io::Result<SubprocessExecutor> {
        let dir = cfg.data_dir.join("runtime");
        std::fs::create_dir_all(&dir)?;
        let owner = dir.canonicalize().unwrap_or_else(|_| dir.clone()).display().to_string();
        let bootstrap_path = dir.join("bootstrap.py");
        write_runtime_file(&bootstrap_path, PYTHON_BOOTSTRAP.as_bytes())?;
        let node_bootstrap = dir.join("bootstrap.js");
        write_runtime_file(&node_bootstrap, NODE_BOOTSTRAP.as_bytes())?;
        // `python3 bootstrap.py` compiles the whole script on every cold start (several ms);
        // the probe compiles it once per server start, for this interpreter, and runtimes run
        // the .pyc. Its tracebacks still name bootstrap.py.
        // The sweep of leftovers (a read of every /proc/*/environ) and the probe (a Python
        // start, ~0.1 s through a pyenv shim) run on their own thread, so the server is ready
        // as soon as its listener is: the first environment waits for them (see `Startup`).
        let compiled_path = dir.join("bootstrap.pyc");
        let zygotes = if cfg.python_fork {
            let script = dir.join("zygote.py");
            write_runtime_file(&script, zygote::PYTHON_ZYGOTE.as_bytes())?;
            Some(Arc::new(Zygotes::new(script, (OWNER_VAR.to_string(), owner.clone()), Box::new(spawn_std))))
        } else {
            None
        };
        let startup = Arc::new(Startup { zygotes: zygotes.clone(), ..Startup::default() });
        let (st, o, py, b, c) =
            (startup.clone(), owner.clone(), cfg.python.clone(), bootstrap_path.clone(), compiled_path.clone());
        let spawned =
            std::thread::Builder::new().name("subprocess-startup".into()).spawn(move || st.run(&o, &py, &b, &c));
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread for the Python probe ({e}): probing before ready");
            startup.run(&owner, &cfg.python, &bootstrap_path, &compiled_path);
        }
        let python_runtimes = cfg
            .python_runtimes
            .iter()
            .filter_map(|(r, p)| Some((r.strip_prefix("python")?.to_string(), p.clone())))
            .collect();
        Ok(SubprocessExecutor {
            zygotes,
            python_runtimes,
            pythons: Default::default(),
            startup,
            node: cfg.node.clone(),
            node_found: Default::default(),
            node_bootstrap,
            bootstrap_path,
            warned: Default::default(),
            owner,
            debugpy: std::sync::OnceLock::new(),
        })
    }

    /// Removes the fork servers' spares (their cgroups, and the spares in them).
    pub async fn shutdown(&self) {
        let Some(z) = &self.zygotes else { return };
        let spares = z.take_spares();
        if !spares.is_empty() {
            let _ = tokio::task::spawn_blocking(move || spares.into_iter().for_each(|s| s.cgroup.remove())).await;
        }
    }

    /// `--python` as probed; waits for the probe (blocking) if it has not finished. Its
    /// callers run after [`Self::startup_done`] (a start), or on the blocking pool ([`Self::can_run`]).
    fn main_python(&self) -> &MainPython {
        self.startup.main.wait()
    }

    /// Waits, off the async workers, for the sweep of leftovers and, when `python`, for the
    /// probe of `--python` (a no-op once they are done: every start after the first).
    async fn startup_done(&self, python: bool) {
        let st = &self.startup;
        if st.swept.get().is_some() && (!python || st.main.get().is_some()) {
            return;
        }
        let st = self.startup.clone();
        let _ = tokio::task::spawn_blocking(move || {
            st.swept.wait();
            if python {
                st.main.wait();
            }
        })
        .await;
    }

    /// The interpreter for `python<declared>` functions other than `--python`: the
    /// `--python-runtime` mapping (trusted, with a server-log warning when it reports another
    /// version), else `python<declared>` on PATH when it is that version. Asked once per version.
    async fn python_for(&self, declared: &str) -> Option<Arc<HostPython>> {
        if self.main_python().version.as_deref() == Some(declared) && !self.python_runtimes.contains_key(declared) {
            return None;
        }
        if let Some(found) = self.pythons.lock().get(declared) {
            return found.clone();
        }
        let mapped = self.python_runtimes.get(declared).cloned();
        let candidate = mapped.clone().unwrap_or_else(|| format!("python{declared}"));
        let dir = self.bootstrap_path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (bootstrap, compiled) = (self.bootstrap_path.clone(), dir.join(format!("bootstrap-{declared}.pyc")));
        let probe = {
            let candidate = candidate.clone();
            tokio::task::spawn_blocking(move || probe_python(&candidate, &bootstrap, &compiled)).await.ok().flatten()
        };
        let found = match (probe, &mapped) {
            (Some(p), Some(_)) => {
                if p.version != declared {
                    tracing::warn!(runtime = %format!("python{declared}"), python = %p.path, version = %p.version,
                        "--python-runtime maps python{declared} to an interpreter that reports Python {}", p.version);
                }
                tracing::info!(python = %p.path, version = %p.version, "python{declared} functions run on {}", p.path);
                Some(Arc::new(p))
            }
            (None, Some(m)) => {
                tracing::warn!(python = %m, "--python-runtime python{declared}={m} cannot run: using --python instead");
                None
            }
            (Some(p), None) if p.version == declared => {
                tracing::info!(python = %p.path, "python{declared} functions run on {}", p.path);
                Some(Arc::new(p))
            }
            _ => None,
        };
        self.pythons.lock().insert(declared.to_string(), found.clone());
        found
    }

    /// The warning a `python3.X` function running on another host version gets in its own
    /// log (after its START line), or None when the versions agree.
    fn python_mismatch(&self, declared: &str, host: Option<&HostPython>) -> Option<String> {
        if host.is_some() {
            return None;
        }
        let main = self.main_python();
        let have = main.version.as_deref()?;
        (have != declared).then(|| {
            format!(
                "RustStack warning: this function's runtime is python{declared}, but this host has no python{declared} \
                 (none on PATH, no --python-runtime python{declared}=PATH): it runs on Python {have} ({})\n",
                main.python
            )
        })
    }

    fn command_for(
        &self,
        spec: &EnvSpec,
        host_python: Option<&HostPython>,
    ) -> Result<(PathBuf, Vec<String>), AwsError> {
        let runtime = spec.runtime.as_deref().unwrap_or("");
        // A custom runtime's bootstrap: code dir first, then the layers (/opt), like AWS.
        let own_bootstrap =
            spec.code_dir.iter().chain(spec.layer_dirs.iter().rev()).map(|d| d.join("bootstrap")).find(|p| p.is_file());
        if runtime.starts_with("provided") || (!runtime.starts_with("python") && own_bootstrap.is_some()) {
            return match own_bootstrap {
                Some(p) => Ok((p, vec![])),
                None => Err(AwsError::new(
                    http::StatusCode::BAD_GATEWAY,
                    "InvalidRuntimeException",
                    format!("Runtime {runtime}: no bootstrap executable found in the function's code or layers"),
                )),
            };
        }
        if let Some(declared) = runtime.strip_prefix("python") {
            if let Some(p) = host_python {
                let args = vec!["-u".into(), "-X".into(), "utf8".into(), p.bootstrap_run.display().to_string()];
                return Ok((PathBuf::from(&p.path), args));
            }
            let main = self.main_python();
            if let Some(host) = &main.version
                && host != declared
                && self.warned.lock().insert(declared.to_string())
            {
                tracing::warn!(declared = %runtime, host = %host, "running {runtime} functions on host python {host}");
            }
            return Ok((
                PathBuf::from(&main.python),
                vec!["-u".into(), "-X".into(), "utf8".into(), main.bootstrap_run.display().to_string()],
            ));
        }
        if let Some(declared) = runtime.strip_prefix("nodejs") {
            let Some(node) = self.host_node() else {
                return Err(AwsError::new(
                    http::StatusCode::BAD_GATEWAY,
                    "InvalidRuntimeException",
                    format!(
                        "Runtime {runtime}: no Node.js found on this host (`{}`); install node, pass --node, or use --lambda-executor docker",
                        self.node
                    ),
                ));
            };
            let declared = declared.trim_end_matches(".x");
            if declared != node.major && self.warned.lock().insert(runtime.to_string()) {
                tracing::warn!(declared = %runtime, host = %node.major, "running {runtime} functions on host node {}", node.major);
            }
            // The flags of the Lambda images' /var/runtime/bootstrap.
            let args = vec![
                "--expose-gc".into(),
                "--max-http-header-size".into(),
                "81920".into(),
                self.node_bootstrap.display().to_string(),
            ];
            return Ok((PathBuf::from(&node.path), args));
        }
        Err(AwsError::new(
            http::StatusCode::BAD_GATEWAY,
            "InvalidRuntimeException",
            format!("Runtime {runtime} cannot run in subprocess mode; use --lambda-executor docker or auto"),
        ))
    }

    /// Whether a host process can run functions of `runtime`: Python and Node.js when the
    /// host has them, custom runtimes (their own bootstrap). Others (java, dotnet, ruby) need
    /// their Lambda image.
    pub fn can_run(&self, runtime: &str) -> bool {
        if runtime.starts_with("python") {
            !self.python_runtimes.is_empty() || self.main_python().version.is_some()
        } else if runtime.starts_with("nodejs") {
            self.host_node().is_some()
        } else {
            runtime.starts_with("provided")
        }
    }

    /// `--lambda-debug`: the bundled clients' arguments with the debugger's added (Python
    /// runs the bootstrap's source under debugpy, Node gets `--inspect-brk`). A custom
    /// runtime's bootstrap runs unchanged.
    async fn under_debugger(
        &self,
        spec: &EnvSpec,
        program: &Path,
        mut args: Vec<String>,
    ) -> Result<Vec<String>, AwsError> {
        use super::debug::{self, Debugger};
        let Some(d) = &spec.debug else { return Ok(args) };
        let runtime = spec.runtime.as_deref();
        let listen = format!("127.0.0.1:{}", d.port_for(runtime));
        let bundled = |path: &Path| args.last().is_some_and(|a| *a == path.display().to_string());
        match Debugger::for_runtime(runtime) {
            // The bundled bootstrap, as compiled for whichever interpreter runs it.
            Debugger::Debugpy
                if args.last().is_some_and(|a| {
                    let a = Path::new(a);
                    a.parent() == self.bootstrap_path.parent()
                        && a.file_name().is_some_and(|n| n.to_string_lossy().starts_with("bootstrap"))
                }) =>
            {
                // Asked until it is there: installing debugpy needs no server restart.
                if self.debugpy.get().is_none() {
                    let python = program.display().to_string();
                    let found = tokio::task::spawn_blocking(move || debug::find_debugpy(&python))
                        .await
                        .unwrap_or_else(|e| Err(format!("the look for debugpy failed: {e}")));
                    let dir = found
                        .map_err(|why| AwsError::new(http::StatusCode::BAD_GATEWAY, "InvalidRuntimeException", why))?;
                    let _ = self.debugpy.set(dir);
                }
                args.pop();
                args.extend(debug::debugpy_args(None, &listen, &self.bootstrap_path.display().to_string()));
            }
            Debugger::Inspector if bundled(&self.node_bootstrap) => args.insert(0, debug::inspect_flag(&listen)),
            _ => {}
        }
        Ok(args)
    }

    /// Asks `--node` for its version and real path, once (blocking the first time: its callers
    /// run on the blocking pool, or after [`Self::node_probed`]).
    fn host_node(&self) -> Option<HostNode> {
        self.node_found.get_or_init(|| probe_node(&self.node)).clone()
    }

    /// Has `--node` asked, on the blocking pool, unless it was already.
    async fn node_probed(&self) {
        if self.node_found.get().is_some() {
            return;
        }
        let (found, node) = (self.node_found.clone(), self.node.clone());
        let _ = tokio::task::spawn_blocking(move || {
            found.get_or_init(|| probe_node(&node));
        })
        .await;
    }

    /// NODE_PATH as the Lambda images set it: the layers' module directories (see
    /// [`LayerPaths`]), the runtime dir, then the code.
    fn node_path(&self, layers: &LayerPaths, code_dir: &Path) -> String {
        let mut dirs: Vec<PathBuf> = layers.node_modules.clone();
        if let Some(runtime_dir) = self.node_bootstrap.parent() {
            dirs.push(runtime_dir.to_path_buf());
        }
        dirs.push(code_dir.to_path_buf());
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
    }

    /// The major version of the host's Node.js ("" when there is none).
    pub fn node_major(&self) -> String {
        self.host_node().map(|n| n.major).unwrap_or_default()
    }

    pub async fn start(
        &self,
        spec: &EnvSpec,
        vars: Vec<(String, String)>,
        endpoint: Arc<Endpoint>,
        log: Arc<LogSink>,
    ) -> Result<Process, AwsError> {
        let declared = spec.runtime.as_deref().and_then(|r| r.strip_prefix("python"));
        self.startup_done(declared.is_some()).await;
        let host_python = match declared {
            Some(d) => self.python_for(d).await,
            None => None,
        };
        if spec.runtime.as_deref().is_some_and(|r| r.starts_with("nodejs")) {
            self.node_probed().await;
        }
        let (program, args) = self.command_for(spec, host_python.as_deref())?;
        let args = self.under_debugger(spec, &program, args).await?;
        // Said in the function's own log too (and so in LogType=Tail and CloudWatch), as the
        // first line of its first invocation, after START.
        if let Some(warning) = declared.and_then(|d| self.python_mismatch(d, host_python.as_deref())) {
            log.append(warning.as_bytes());
        }
        let code_dir = spec.code_dir.clone().ok_or_else(|| AwsError::service("function has no code"))?;
        let is_node = spec.runtime.as_deref().is_some_and(|r| r.starts_with("nodejs"));
        let layers = LayerPaths::new(&spec.layer_dirs, &if is_node { self.node_major() } else { String::new() });
        let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let host_ld = std::env::var("LD_LIBRARY_PATH").ok();
        // A forked interpreter's loader read LD_LIBRARY_PATH at its own start: functions that
        // ship libraries (a lib/ dir in their code or a layer) are exec'd.
        let ships_libs = tokio::task::spawn_blocking({
            let dirs: Vec<PathBuf> = std::iter::once(code_dir.join("lib")).chain(layers.lib.iter().cloned()).collect();
            move || dirs.iter().any(|d| d.is_dir())
        })
        .await
        .unwrap_or(true);
        let runtime_dir = self.bootstrap_path.parent().unwrap_or(Path::new("/"));
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), layers.path(&host_path)),
            ("LD_LIBRARY_PATH".into(), layers.ld_library_path(&code_dir, host_ld.as_deref())),
            ("LANG".into(), "en_US.UTF-8".into()),
            ("HOME".into(), std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())),
            ("LAMBDA_TASK_ROOT".into(), code_dir.display().to_string()),
            ("LAMBDA_RUNTIME_DIR".into(), runtime_dir.display().to_string()),
            (OWNER_VAR.into(), self.owner.clone()),
        ];
        // Only the bundled Python client reads these (and hides them from the function).
        if let Some(version) = declared {
            env.push(("_RUSTSTACK_LAYER_DIRS".into(), layers.roots.to_string_lossy().into_owned()));
            env.push(("_RUSTSTACK_PYTHON_VERSION".into(), version.into()));
        }
        if is_node {
            env.push(("NODE_PATH".into(), self.node_path(&layers, &code_dir)));
        }
        // The function's own variables last: NODE_PATH, PATH, LANG… are not reserved.
        // Those an interpreter reads only at its start (PYTHON*, LD_*, the locale) make it an exec.
        let startup_vars = vars
            .iter()
            .any(|(k, _)| k.starts_with("PYTHON") || k.starts_with("LD_") || k.starts_with("LC_") || k == "LANG");
        env.extend(vars);
        // stdout and stderr share one pipe, as on AWS: the log keeps the order of the writes.
        let (out_rx, out_tx) =
            output_pipe().map_err(|e| AwsError::service(format!("cannot make an output pipe: {e}")))?;
        let limit = u64::from(spec.memory_mb.max(16)) * 1024 * 1024;
        let cgroups = self.startup.cgroups.get().and_then(Option::as_ref).cloned();
        // The fork server: the bundled client on an interpreter of ours, no debugger, and
        // nothing that only an interpreter's start would read.
        let mut fork = match (&self.zygotes, declared, &spec.debug, ships_libs, startup_vars, args.last()) {
            (Some(zygotes), Some(_), None, false, false, Some(run)) => {
                Some((zygotes.clone(), program.display().to_string(), PathBuf::from(run)))
            }
            _ => None,
        };
        // A spare the fork server made ahead, already in a memory cgroup of its own: the
        // cold start skips the fork and the move into the cgroup.
        if let (Some((zygotes, python, run)), Some(cgroups)) = (&fork, &cgroups)
            && let Some(z) = zygotes.running(python, run)
            && let Some(spare) = z.take_spare()
        {
            match start_spare(&z, spare, limit, &env, &code_dir, &out_tx).await {
                Ok((spawned, cgroup, oom)) => {
                    drop(out_tx);
                    tracing::debug!(pid = spawned.pid, "python environment started from a pre-forked spare");
                    refill(z, cgroups.clone());
                    return Ok(Process::forked(spawned, out_rx, log, Some(cgroup), oom, endpoint));
                }
                Err(why) if z.usable() => {
                    tracing::warn!(python = %python, "python fork server: spare: {why}: forking one");
                }
                Err(why) => {
                    // As for a fork it did not answer: this environment is exec'd, the next
                    // one forked from a new fork server.
                    tracing::warn!(python = %python, "python fork server: {why}: this environment is started by exec");
                    fork = None;
                }
            }
        }
        // The environment's memory cgroup, limited to MemorySize (none where the host has no
        // memory cgroups).
        let cgroup = match &cgroups {
            Some(c) => {
                let c = c.clone();
                let made = tokio::task::spawn_blocking(move || c.create(limit)).await;
                match made {
                    Ok(Ok(cg)) => Some(cg),
                    Ok(Err(e)) => return Err(AwsError::service(format!("cannot create a memory cgroup: {e}"))),
                    Err(e) => return Err(AwsError::service(format!("cannot create a memory cgroup: {e}"))),
                }
            }
            None => None,
        };
        let cgroup_fd = cgroup.as_ref().map_or(-1, EnvCgroup::procs_fd);
        let oom = cgroup.as_ref().and_then(EnvCgroup::oom_count).map(Arc::new);
        if let Some((zygotes, python, run)) = fork {
            let zygote = match zygotes.running(&python, &run) {
                Some(z) => Some(z),
                None => {
                    let (z, source) = (zygotes.clone(), self.bootstrap_path.clone());
                    let (p, r) = (python.clone(), run.clone());
                    tokio::task::spawn_blocking(move || z.get(&p, &r, &source)).await.ok().flatten()
                }
            };
            if let Some(z) = zygote {
                match z.spawn(&env, &code_dir, &out_tx, cgroup.as_ref().map(EnvCgroup::procs_fd)).await {
                    Ok(spawned) => {
                        drop(out_tx);
                        if let Some(c) = cgroups {
                            refill(z, c);
                        }
                        return Ok(Process::forked(spawned, out_rx, log, cgroup, oom, endpoint));
                    }
                    Err(why) => {
                        tracing::warn!(python = %python, "python fork server: {why}: this environment is started by exec");
                    }
                }
            }
        }
        let mut cmd = Command::new(&program);
        cmd.args(&args).current_dir(&code_dir).env_clear();
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let err_tx = out_tx.try_clone().map_err(|e| AwsError::service(format!("cannot make an output pipe: {e}")))?;
        cmd.stdin(Stdio::null()).stdout(Stdio::from(out_tx)).stderr(Stdio::from(err_tx)).process_group(0);
        // SAFETY: prctl and write are async-signal-safe. PR_SET_PDEATHSIG asks the kernel to
        // kill the runtime if the server dies (even by kill -9), so no runtime outlives
        // RustStack; writing `0` to the open cgroup.procs moves this child into its memory
        // cgroup before it execs anything (`cgroup` keeps that fd open until the spawn returns).
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if cgroup_fd >= 0 && libc::write(cgroup_fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = match spawn_runtime(cmd).await {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = cgroup {
                    let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
                }
                return Err(AwsError::new(
                    http::StatusCode::BAD_GATEWAY,
                    "InvalidRuntimeException",
                    format!("could not start {}: {e}", program.display()),
                ));
            }
        };
        let pid = child.id().map(|p| p as i32).unwrap_or(-1);
        let exited = Arc::new(AtomicBool::new(false));
        let output = match tokio::net::unix::pipe::Receiver::from_owned_fd(out_rx) {
            Ok(rx) => Some(PipeOutput::start(rx, log)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runtime's output pipe: its output is lost");
                None
            }
        };
        let ex = exited.clone();
        let peak = Arc::new(AtomicU64::new(0));
        let peak_at_exit = peak.clone();
        let oom_at_exit = oom.clone();
        tokio::spawn(async move {
            // Before reaping it: a runtime that dies mid-invocation still reports its memory.
            if let Some(b) = exit_peak_bytes(pid).await {
                peak_at_exit.fetch_max(b, Ordering::Relaxed);
            }
            let status = child.wait().await;
            let why = match status {
                Ok(s) => describe_exit(s.code(), std::os::unix::process::ExitStatusExt::signal(&s)),
                Err(e) => format!("wait failed: {e}"),
            };
            ended(ex, why, oom_at_exit, cgroup, peak_at_exit, endpoint).await;
        });
        Ok(Process::running(pid, exited, output, peak, oom, None))
    }
}

/// The memory limit of a spare's cgroup until it is taken: 128 MB, the smallest MemorySize
/// (lowering a v1 limit makes the kernel reclaim down to it; a waiting spare uses a few MB).
const SPARE_LIMIT: u64 = 128 * 1024 * 1024;

/// Has `z` make its next spare, on the blocking pool (a cgroup made, a fork, a move into it).
fn refill(z: Arc<zygote::Zygote>, cgroups: Arc<MemoryCgroups>) {
    tokio::task::spawn_blocking(move || z.make_spare(|| cgroups.create_spare(SPARE_LIMIT)));
}

/// Makes the spare the environment of `env` and `cwd` (output to `out`), with `limit` as its
/// memory limit. Its cgroup is removed (and the spare with it) when that fails.
async fn start_spare(
    z: &zygote::Zygote,
    spare: zygote::Spare,
    limit: u64,
    env: &[(String, String)],
    cwd: &Path,
    out: &OwnedFd,
) -> Result<(zygote::Spawned, EnvCgroup, Option<Arc<OomCount>>), String> {
    let pid = spare.pid;
    // A few cgroupfs writes and an open, on the blocking pool.
    let ready = tokio::task::spawn_blocking(move || {
        if !spare.alive() {
            spare.cgroup.remove();
            return Err("it has exited".to_string());
        }
        let mut cgroup = spare.cgroup;
        if let Err(e) = cgroup.set_limit(limit) {
            cgroup.remove();
            return Err(format!("cannot set its memory limit: {e}"));
        }
        if let Err(e) = cgroup.become_env() {
            cgroup.remove();
            return Err(format!("cannot rename its cgroup: {e}"));
        }
        let oom = cgroup.oom_count().map(Arc::new);
        Ok((cgroup, oom))
    })
    .await
    .map_err(|e| e.to_string())??;
    match z.start_spare(pid, env, cwd, out).await {
        Ok(spawned) => Ok((spawned, ready.0, ready.1)),
        Err(why) => {
            let cgroup = ready.0;
            tokio::task::spawn_blocking(move || cgroup.remove());
            Err(why)
        }
    }
}

/// `exit status N` / `signal: NAME`, as a runtime's death is reported.
fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("signal: {}", signal_name(sig)),
        _ => "exit status unknown".into(),
    }
}

/// A runtime has exited (`why`): the environment ends with it. Whatever else runs in its
/// cgroup is killed and the cgroup removed. An OOM kill not yet reported (of the runtime, or
/// of a child whose loss made it exit) was the limit.
async fn ended(
    exited: Arc<AtomicBool>,
    why: String,
    oom: Option<Arc<OomCount>>,
    cgroup: Option<EnvCgroup>,
    peak_at_exit: Arc<AtomicU64>,
    endpoint: Arc<Endpoint>,
) {
    exited.store(true, Ordering::SeqCst);
    let oom = match cgroup {
        Some(cg) => tokio::task::spawn_blocking(move || {
            let oom = oom.is_some_and(|o| o.new_kills());
            let peak = if oom { cg.peak_bytes() } else { None };
            cg.remove();
            (oom, peak)
        })
        .await
        .unwrap_or((false, None)),
        None => (false, None),
    };
    if let (true, Some(b)) = oom {
        peak_at_exit.fetch_max(b, Ordering::Relaxed);
    }
    endpoint.set_death(if oom.0 { Death::OutOfMemory(why) } else { Death::Exited(why) });
}

impl Process {
    /// A started runtime's handle, with its `/proc/<pid>/status` kept open for its VmHWM.
    fn running(
        pid: i32,
        exited: Arc<AtomicBool>,
        output: Option<PipeOutput>,
        peak: Arc<AtomicU64>,
        oom: Option<Arc<OomCount>>,
        pidfd: Option<Arc<OwnedFd>>,
    ) -> Process {
        let status = std::fs::File::open(format!("/proc/{pid}/status")).ok();
        Process {
            pid,
            exited,
            output,
            peak,
            status,
            hwm_at: AtomicUsize::new(0),
            tree_walked: parking_lot::Mutex::new(None),
            oom,
            pidfd,
        }
    }

    /// A runtime forked by a fork server: its exit is seen on its pidfd, its status comes
    /// from the zygote that reaps it (a SIGKILL when the zygote died first: its children die
    /// with it).
    fn forked(
        spawned: zygote::Spawned,
        out_rx: OwnedFd,
        log: Arc<LogSink>,
        cgroup: Option<EnvCgroup>,
        oom: Option<Arc<OomCount>>,
        endpoint: Arc<Endpoint>,
    ) -> Process {
        let zygote::Spawned { pid, pidfd, exit } = spawned;
        let output = match tokio::net::unix::pipe::Receiver::from_owned_fd(out_rx) {
            Ok(rx) => Some(PipeOutput::start(rx, log)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the runtime's output pipe: its output is lost");
                None
            }
        };
        let pidfd = Arc::new(pidfd);
        let exited = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (ex, peak_at_exit, fd, oom_at_exit) = (exited.clone(), peak.clone(), pidfd.clone(), oom.clone());
        tokio::spawn(async move {
            if let Ok(dup) = fd.try_clone() {
                // SAFETY: plain fcntl on an fd we own.
                unsafe {
                    let flags = libc::fcntl(dup.as_raw_fd(), libc::F_GETFL);
                    libc::fcntl(dup.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
                // SAFETY: the AsyncFd owns `dup` and is dropped (deregistering it) before it closes.
                let afd =
                    unsafe { tokio::io::unix::AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) };
                if let Ok(afd) = afd {
                    let _ = afd.readable().await;
                }
            }
            let why = match tokio::time::timeout(std::time::Duration::from_secs(10), exit).await {
                Ok(Ok(info)) => {
                    peak_at_exit.fetch_max(info.maxrss_kb * 1024, Ordering::Relaxed);
                    let (code, signal) = zygote::describe_status(info.status);
                    describe_exit(code, signal)
                }
                _ => describe_exit(None, Some(libc::SIGKILL)),
            };
            ended(ex, why, oom_at_exit, cgroup, peak_at_exit, endpoint).await;
        });
        Process::running(pid, exited, output, peak, oom, Some(pidfd))
    }
}

/// Waits until `pid` (our child) has exited, without reaping it (a pidfd), and returns its
/// peak RSS from its rusage (`ru_maxrss`). Tokio reaps a child only while its `wait` is
/// polled, which the caller does after this. None where pidfds are missing (Linux < 5.3).
async fn exit_peak_bytes(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: plain syscall; it returns a new fd we own, or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` is a fresh pidfd owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as libc::c_int) };
    // SAFETY: the AsyncFd owns `fd` and is dropped (deregistering it) before the fd closes.
    let afd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()?;
    let _ready = afd.readable().await.ok()?;
    // SAFETY: waitid (the raw syscall, whose 5th argument is a rusage) writes one siginfo_t
    // and one rusage that we own; WNOWAIT leaves the child for tokio to reap.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above: both out-pointers are to locals of the right types that outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            libc::P_PID,
            pid,
            &mut info as *mut libc::siginfo_t,
            libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            &mut usage as *mut libc::rusage,
        )
    };
    if rc != 0 {
        return None;
    }
    u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024)
}

/// A pipe for a runtime's output: (read end, non-blocking, for the reader; write end, for
/// the child). Both close on exec, so other runtimes started meanwhile do not inherit them
/// (the child gets its own copies as fd 1 and 2).
fn output_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into `fds`, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by pipe2 and are owned by nothing else.
    let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: plain fcntl on an fd we own.
    unsafe {
        let flags = libc::fcntl(fds[0], libc::F_GETFL);
        libc::fcntl(fds[0], libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    Ok((rx, tx))
}

/// The VmHWM in an open `/proc/<pid>/status`, in bytes, read again from its start. The
/// buffer is not zeroed first: this runs after every invoke, and zeroing 4 KiB cost more
/// than the rest of the read. `hint` is where the `VmHWM:` line was last found: looked at
/// first (the lines before it rarely change length), the file scanned only when it is not there.
fn own_peak_bytes(status: &std::fs::File, hint: &AtomicUsize) -> Option<u64> {
    use std::os::fd::AsRawFd;
    const LEN: usize = 4096;
    let mut buf = std::mem::MaybeUninit::<[u8; LEN]>::uninit();
    // SAFETY: pread writes at most LEN bytes into the buffer, which is LEN bytes long and
    // outlives the call; the fd is open for as long as `status` is borrowed.
    let n = unsafe { libc::pread(status.as_raw_fd(), buf.as_mut_ptr().cast(), LEN, 0) };
    let n = usize::try_from(n).ok()?.min(LEN);
    // SAFETY: pread initialized the first `n` bytes (n ≤ LEN, checked above).
    let read = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
    let h = hint.load(Ordering::Relaxed);
    let at = if h > 0 && read.get(h - 1) == Some(&b'\n') && read[h..].starts_with(HWM_KEY) {
        h
    } else {
        let at = hwm_line(read)?;
        hint.store(at, Ordering::Relaxed);
        at
    };
    hwm_at(read, at)
}

const HWM_KEY: &[u8] = b"VmHWM:";

/// The `VmHWM:` line of a status file, in bytes. Read as bytes, line starts only: this runs
/// after every invoke (a `str::lines` walk with UTF-8 checks cost ~10k instructions).
fn hwm_bytes(status: &[u8]) -> Option<u64> {
    hwm_at(status, hwm_line(status)?)
}

/// Where the `VmHWM:` line of a status file starts.
fn hwm_line(status: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let rest = status.get(at..)?;
        if rest.starts_with(HWM_KEY) {
            return Some(at);
        }
        at += rest.iter().position(|b| *b == b'\n')? + 1;
    }
}

/// The kB figure of the `VmHWM:` line at `at`, in bytes.
fn hwm_at(status: &[u8], at: usize) -> Option<u64> {
    let line = status.get(at + HWM_KEY.len()..)?;
    let digits = line.iter().skip_while(|b| **b == b' ' || **b == b'\t').take_while(|b| b.is_ascii_digit());
    let mut kb: u64 = 0;
    let mut any = false;
    for d in digits {
        kb = kb.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(kb * 1024)
}

/// Peak resident memory of `pid` and its descendants, in bytes: the sum of their VmHWM
/// (each process's own high-water mark; a little over the tree's true peak when children
/// peaked at different times). None once the process is gone.
fn tree_peak_bytes(pid: i32) -> Option<u64> {
    let mut total = 0u64;
    let mut stack = vec![pid];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        seen += 1;
        if seen > 4096 {
            break;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            if p == pid {
                return None;
            }
            continue;
        };
        total += hwm_bytes(status.as_bytes()).unwrap_or(0);
        // Children of every thread (Linux ≥ 3.5 with CONFIG_PROC_CHILDREN).
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(children) = std::fs::read_to_string(t.path().join("children")) {
                    stack.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
                }
            }
        }
    }
    Some(total)
}

/// Forks a runtime from the one thread that forks them all, which lives as long as the server.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process.
/// Tokio's blocking-pool threads (and the workers that `block_in_place` turns into them) exit
/// after 10 s idle, and that SIGKILLed warm runtimes: idle ones were silently replaced, busy
/// ones failed their invocation with `Runtime.ExitError` (`signal: killed`).
async fn spawn_runtime(cmd: Command) -> std::io::Result<tokio::process::Child> {
    let handle = tokio::runtime::Handle::current();
    let (reply, result) = tokio::sync::oneshot::channel();
    let mut cmd = cmd;
    on_spawner(Box::new(move || {
        let _runtime = handle.enter();
        let _ = reply.send(cmd.spawn());
    }));
    result.await.unwrap_or_else(|_| Err(std::io::Error::other("the runtime spawner thread stopped")))
}

/// [`spawn_runtime`] for a std `Command` (the fork servers). Blocking.
pub(super) fn spawn_std(mut cmd: std::process::Command) -> std::io::Result<std::process::Child> {
    let (reply, result) = std::sync::mpsc::channel();
    on_spawner(Box::new(move || {
        let _ = reply.send(cmd.spawn());
    }));
    result.recv().unwrap_or_else(|_| Err(std::io::Error::other("the runtime spawner thread stopped")))
}

/// Runs `job` on the one thread that forks all runtimes (inline if it could not be started).
fn on_spawner(job: Box<dyn FnOnce() + Send>) {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: std::sync::OnceLock<std::sync::mpsc::Sender<Job>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new().name("runtime-spawner".into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the runtime spawner thread; forking from tokio threads");
        }
        tx
    });
    if let Err(std::sync::mpsc::SendError(job)) = spawner.send(job) {
        job();
    }
}

/// Kills processes that an earlier server on this data dir started and left behind.
///
/// PR_SET_PDEATHSIG takes a runtime down with the server, but not what the runtime started
/// (a helper process, a shell's children): after a kill -9 those live on, so every process
/// whose environment carries this data dir's [`OWNER_VAR`] is killed at start.
fn kill_leftovers(owner: &str) {
    let marker = format!("{OWNER_VAR}={owner}");
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else { return };
    let mut killed = 0;
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            // SAFETY: plain syscall on a pid that was just seen carrying our marker.
            if unsafe { libc::kill(pid as i32, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    if killed > 0 {
        tracing::warn!(killed, "stopped processes left behind by an earlier server on this data dir");
    }
}

fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGKILL => "killed".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGSEGV => "segmentation fault".into(),
        libc::SIGABRT => "aborted".into(),
        n => n.to_string(),
    }
}

impl Process {
    /// The runtime's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the runtime process still runs. Asks the kernel (waitid with WNOWAIT, which
    /// reaps nothing), so a runtime killed a moment ago counts as gone even before its exit
    /// has been collected and reported.
    pub fn alive(&self) -> bool {
        if self.exited.load(Ordering::SeqCst) || self.pid <= 0 {
            return false;
        }
        if let Some(fd) = &self.pidfd {
            // Readable once the process has exited.
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one pollfd we own, without waiting.
            return unsafe { libc::poll(&mut p, 1, 0) } == 0;
        }
        // SAFETY: siginfo_t is a plain C struct for which all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes one siginfo_t we own; WNOWAIT leaves the child to its reaper.
        let rc = unsafe {
            libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
        };
        // 0 with no pid: no state change yet, so it runs. ECHILD: already reaped.
        // SAFETY: `info` was zeroed and then filled by waitid, so si_pid reads an initialized field.
        rc == 0 && unsafe { info.si_pid() } == 0
    }

    pub async fn stop(&self) {
        if !self.exited.load(Ordering::SeqCst) && self.pid > 0 {
            // SAFETY: plain syscall; the group is ours (process_group(0) at spawn) and not yet reaped.
            unsafe {
                libc::killpg(self.pid, libc::SIGKILL);
            }
        }
    }

    /// Waits until the output written so far is in the log, a last partial line included.
    pub async fn flush_logs(&self) {
        if let Some(o) = &self.output {
            o.flush().await;
        }
    }

    /// Whether the kernel's OOM killer killed a process of the environment (the runtime or
    /// a child of it) since this was last asked. The counter file is kept open and read
    /// inline: cgroupfs, like procfs, is generated from kernel memory.
    pub fn oom_killed(&self) -> bool {
        self.oom.as_ref().is_some_and(|o| o.new_kills())
    }

    /// Peak RSS of the runtime's process tree so far, in MB (the last one seen once it has
    /// exited). A few small /proc reads, on the blocking pool.
    ///
    /// `reported`: the runtime's own peak (bytes) as the bundled bootstrap reported it with
    /// its result. Taken for a forked runtime only (the fork server's child, which never
    /// exec'd): its ru_maxrss is then the VmHWM its status file says, without the ~7 us of
    /// server CPU that generating that file costs. An exec'd runtime's ru_maxrss may hold the
    /// peak of what ran before the exec, so its status file is read.
    pub async fn peak_memory_mb(&self, reported: Option<u64>) -> u64 {
        let pid = self.pid;
        if pid > 0 && !self.exited.load(Ordering::SeqCst) {
            let walk = {
                let mut last = self.tree_walked.lock();
                let due = last.is_none_or(|t| t.elapsed() >= TREE_WALK_EVERY);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            };
            let now = if walk {
                // The tree walk opens a few files per process: on the blocking pool.
                tokio::task::spawn_blocking(move || tree_peak_bytes(pid)).await.ok().flatten()
            } else if let (Some(b), Some(_)) = (reported, &self.pidfd) {
                Some(b)
            } else {
                // procfs is generated from kernel memory on read: this never waits on a
                // disk, so it is read inline (a spawn_blocking handoff costs more than it).
                self.status.as_ref().and_then(|s| own_peak_bytes(s, &self.hwm_at))
            };
            if let Some(b) = now {
                self.peak.fetch_max(b, Ordering::Relaxed);
            }
        }
        self.peak.load(Ordering::Relaxed).div_ceil(1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn layer_paths_put_the_last_layer_first() {
        let layers = [PathBuf::from("/l/one"), PathBuf::from("/l/two")];
        let p = LayerPaths::new(&layers, "18");
        assert_eq!(p.roots, std::ffi::OsString::from("/l/two:/l/one"));
        assert_eq!(p.path("/usr/bin"), "/l/two/bin:/l/one/bin:/usr/bin");
        assert_eq!(p.ld_library_path(Path::new("/code"), None), "/code/lib:/l/two/lib:/l/one/lib");
        assert_eq!(
            p.node_modules[..2],
            [PathBuf::from("/l/two/nodejs/node18/node_modules"), PathBuf::from("/l/two/nodejs/node_modules")]
        );
        let none = LayerPaths::new(&[], "");
        assert!(none.roots.is_empty() && none.node_modules.is_empty());
        assert_eq!(none.path("/bin"), "/bin");
        assert_eq!(none.ld_library_path(Path::new("/c"), Some("/x")), "/c/lib:/x");
    }

    #[test]
    fn hwm_is_read_from_its_line() {
        let status = b"Name:\tpython3\nVmPeak:\t  30000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(hwm_bytes(status), Some(12345 * 1024));
        assert_eq!(hwm_bytes(b"VmHWM: 7 kB"), Some(7 * 1024));
        assert_eq!(hwm_bytes(b"Name: x\nVmRSS: 1 kB\n"), None);
        assert_eq!(hwm_bytes(b"VmHWM:\t kB\n"), None);
        // Its own peak, through the kept-open status file.
        let own = std::fs::File::open("/proc/self/status").unwrap();
        assert!(own_peak_bytes(&own, &AtomicUsize::new(0)).is_some_and(|b| b > 0));
    }

    #[test]
    fn hwm_hint_is_followed_only_while_it_points_at_the_line() {
        let path = std::env::temp_dir().join(format!("ruststack-hwm-hint-{}", std::process::id()));
        std::fs::write(&path, "Name:\tpy\nState:\tS (sleeping)\nVmHWM:\t  100 kB\n").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let hint = AtomicUsize::new(0);
        assert_eq!(own_peak_bytes(&file, &hint), Some(100 * 1024));
        let at = hint.load(Ordering::Relaxed);
        assert_eq!(at, "Name:\tpy\nState:\tS (sleeping)\n".len());
        assert_eq!(own_peak_bytes(&file, &hint), Some(100 * 1024));
        // A line before it got shorter: the hint points elsewhere, the file is scanned again.
        std::fs::write(&path, "Name:\tpy\nState:\tR (running)\nVmHWM:\t  200 kB\nVmRSS:\t 5 kB\n").unwrap();
        assert_eq!(own_peak_bytes(&file, &hint), Some(200 * 1024));
        assert_eq!(hint.load(Ordering::Relaxed), "Name:\tpy\nState:\tR (running)\n".len());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn alive_sees_an_exit_before_it_is_collected() {
        let child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let p = Process {
            pid: child.id() as i32,
            exited: Arc::new(AtomicBool::new(false)),
            output: None,
            peak: Arc::new(AtomicU64::new(0)),
            status: None,
            hwm_at: AtomicUsize::new(0),
            tree_walked: parking_lot::Mutex::new(None),
            oom: None,
            pidfd: None,
        };
        assert!(p.alive());
        // SAFETY: a plain kill of our own child.
        unsafe { libc::kill(p.pid, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!p.alive(), "a killed child not yet reaped is not alive");
        drop(child);
    }

    #[test]
    fn tree_peak_counts_the_process() {
        let me = std::process::id() as i32;
        assert!(tree_peak_bytes(me).is_some_and(|b| b > 1024 * 1024));
        assert_eq!(tree_peak_bytes(i32::MAX), None);
    }
}

'use strict';
// RustStack's bundled Node.js runtime client (nodejs18.x–22.x in subprocess mode).
//
// Node's standard library only: the official client (aws-lambda-nodejs-runtime-interface-
// client) ships from npm with a native addon. It behaves like the runtime in the
// public.ecr.aws/lambda/nodejs images (see shared/PROTOCOL.md §3 and §4):
//   - _HANDLER "dir/file.export.path": file.js (CommonJS, or ESM in a "type": "module"
//     package), file.mjs or file.cjs under LAMBDA_TASK_ROOT, else a package NODE_PATH finds;
//   - async handlers answer when their promise settles; callback handlers when the
//     callback is called and, while context.callbackWaitsForEmptyEventLoop is true (the
//     default), the event loop is empty; a handler that does neither answers null once the
//     event loop is empty;
//   - errors are {errorType, errorMessage, trace}; init errors go to /init/error and exit 129,
//     an unhandled rejection exits 128;
//   - console.* lines are "<ISO time>\t<request id>\t<LEVEL>\t<message>", or JSON records with
//     AWS_LAMBDA_LOG_FORMAT=JSON, filtered by AWS_LAMBDA_LOG_LEVEL;
//   - awslambda.streamifyResponse / awslambda.HttpResponseStream exist as in the Lambda
//     runtime, and write through: a streaming handler's writes go to the Runtime API as it
//     makes them (a chunked POST in streaming response mode, errors in its trailers).

const http = require('http');
const fs = require('fs');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');
const { Writable } = require('stream');

const API_VERSION = '/2018-06-01/runtime';

// RustStack's own variables (_RUSTSTACK_*) do not exist on AWS: hidden from the function.
// _RUSTSTACK_OWNER stays, because the processes a function starts inherit process.env and
// the server's sweep after a kill -9 finds them by it.
for (const key of Object.keys(process.env)) {
  if (key.startsWith('_RUSTSTACK_') && key !== '_RUSTSTACK_OWNER') delete process.env[key];
}

// ---------------------------------------------------------------- errors

class RuntimeError extends Error {
  constructor(type, message) {
    super(message);
    this.name = type;
  }
}

function toErrorBody(err) {
  if (err instanceof Error) {
    let trace = [];
    if (typeof err.stack === 'string') {
      trace = err.stack.split('\n');
    }
    return { errorType: String(err.name || 'Error'), errorMessage: String(err.message), trace };
  }
  if (err === undefined || err === null) {
    return { errorType: 'Error', errorMessage: 'handled', trace: [] };
  }
  let message;
  try {
    message = typeof err === 'object' ? JSON.stringify(err) : String(err);
  } catch (_) {
    message = String(err);
  }
  return { errorType: typeof err, errorMessage: message, trace: [] };
}

// ---------------------------------------------------------------- logging

let currentRequestId;
const stdoutWrite = (line) => process.stdout.write(line);

// Advanced logging controls, as the Lambda Node.js runtime reads them: AWS_LAMBDA_LOG_FORMAT
// JSON writes one JSON record per call ({timestamp, level, requestId, message}, plus
// errorType/errorMessage/stackTrace for an Error argument); AWS_LAMBDA_LOG_LEVEL turns the
// console methods below it into no-ops.
const LOG_JSON = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
const MIN_LEVEL = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;

function errorFields(err) {
  return {
    errorType: (err && err.constructor && err.constructor.name) || 'UnknownError',
    errorMessage: err.message,
    stackTrace: typeof err.stack === 'string' ? err.stack.split('\n') : [],
  };
}

// Errors nested in a logged value become {errorType, errorMessage, stackTrace}.
function jsonReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign(errorFields(value), value);
  }
  return value;
}

function jsonRecord(level, args) {
  const record = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  if (args.length === 1) {
    record.message = args[0];
    try {
      return JSON.stringify(record, jsonReplacer);
    } catch (_) {
      record.message = util.format(args[0]);
      return JSON.stringify(record);
    }
  }
  record.message = util.format(...args);
  const err = args.find((a) => a instanceof Error);
  if (err) {
    Object.assign(record, errorFields(err));
  }
  return JSON.stringify(record, jsonReplacer);
}

function patchConsole() {
  const methods = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE', fatal: 'FATAL' };
  for (const [method, level] of Object.entries(methods)) {
    if (LEVELS[level] < MIN_LEVEL) {
      console[method] = () => {};
      continue;
    }
    console[method] = (...args) => {
      if (LOG_JSON) {
        stdoutWrite(jsonRecord(level, args) + '\n');
        return;
      }
      let message = util.format(...args);
      if (method === 'trace') {
        const stack = new Error().stack.split('\n').slice(2).join('\n');
        message = 'Trace: ' + message + '\n' + stack;
      }
      // One log event per call: the newlines inside a message are carriage returns, as the
      // Lambda runtime writes them to its log.
      stdoutWrite(`${new Date().toISOString()}\t${currentRequestId}\t${level}\t${message.replace(/\n/g, '\r')}\n`);
    };
  }
}

function logError(prefix, body) {
  if (LOG_JSON) {
    const record = {
      timestamp: new Date().toISOString(),
      level: 'ERROR',
      requestId: currentRequestId,
      message: { errorType: body.errorType, errorMessage: body.errorMessage, stackTrace: body.trace },
      errorType: body.errorType,
      errorMessage: body.errorMessage,
      stackTrace: body.trace,
    };
    stdoutWrite(JSON.stringify(record) + '\n');
    return;
  }
  stdoutWrite(`${new Date().toISOString()}\t${currentRequestId}\tERROR\t${prefix} \t${JSON.stringify(body)}\n`);
}

// ---------------------------------------------------------------- the Runtime API client

function splitAddress(address) {
  if (!address) {
    throw new Error('AWS_LAMBDA_RUNTIME_API is not set');
  }
  const at = address.lastIndexOf(':');
  if (at < 0) {
    return { host: address, port: 80 };
  }
  return { host: address.slice(0, at).replace(/^\[|\]$/g, ''), port: parseInt(address.slice(at + 1), 10) };
}

const endpoint = splitAddress(process.env.AWS_LAMBDA_RUNTIME_API);
// One keep-alive connection, like the official client. Idle sockets are unref'd by the
// agent, so they never keep the event loop alive.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function call(method, urlPath, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: endpoint.host, port: endpoint.port, method, path: API_VERSION + urlPath, agent, headers: headers || {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function post(urlPath, body, errorType, contentType) {
  const payload = Buffer.from(body);
  const headers = { 'Content-Type': contentType || 'application/json', 'Content-Length': payload.length };
  if (errorType) {
    headers['Lambda-Runtime-Function-Error-Type'] = errorType;
  }
  const res = await call('POST', urlPath, payload, headers);
  if (res.status === 413 && !errorType) {
    // Too large for the platform: the invocation fails instead (the server says so too).
    return;
  }
  if (res.status >= 400 && res.status !== 413) {
    stdoutWrite(`RustStack runtime: POST ${urlPath} answered ${res.status}: ${res.body.toString()}\n`);
  }
}

function postError(requestId, err) {
  const body = toErrorBody(err);
  logError('Invoke Error', body);
  return post(`/invocation/${requestId}/error`, JSON.stringify(body), body.errorType);
}

async function failInit(err) {
  const body = toErrorBody(err);
  logError('Uncaught Exception', body);
  try {
    await post('/init/error', JSON.stringify(body), body.errorType);
  } finally {
    process.exit(129);
  }
}

// ---------------------------------------------------------------- loading the handler

function isModuleNotFound(err, file) {
  if (!err || (err.code !== 'MODULE_NOT_FOUND' && err.code !== 'ERR_MODULE_NOT_FOUND')) {
    return false;
  }
  // Only when the handler's own module is missing, not something it imports.
  return file === undefined || String(err.message).includes(file);
}

function isEsmPackage(dir, root) {
  // The nearest package.json decides whether a .js file is ESM.
  for (let d = dir; ; d = path.dirname(d)) {
    const pkg = path.join(d, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        return JSON.parse(fs.readFileSync(pkg, 'utf8')).type === 'module';
      } catch (_) {
        return false;
      }
    }
    if (d === root || d === path.dirname(d)) {
      return false;
    }
  }
}

async function importFile(file) {
  return import(pathToFileURL(file).href);
}

async function loadModule(root, moduleRoot, moduleName) {
  const base = path.resolve(root, moduleRoot, moduleName);
  try {
    if (fs.existsSync(base + '.js')) {
      const file = base + '.js';
      if (isEsmPackage(path.dirname(file), root)) {
        return await importFile(file);
      }
      try {
        return require(file);
      } catch (err) {
        if (err && (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE')) {
          return await importFile(file);
        }
        throw err;
      }
    }
    if (fs.existsSync(base + '.mjs')) {
      return await importFile(base + '.mjs');
    }
    if (fs.existsSync(base + '.cjs')) {
      return require(base + '.cjs');
    }
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new RuntimeError('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`);
    }
    if (isModuleNotFound(err)) {
      throw new RuntimeError('Runtime.ImportModuleError', `Error: ${err.message}`);
    }
    throw err;
  }
  // Not a file of the function: a package (node_modules under the task root, NODE_PATH).
  try {
    const resolved = require.resolve(moduleName, { paths: [path.resolve(root, moduleRoot), root] });
    return require(resolved);
  } catch (err) {
    if (isModuleNotFound(err, moduleName)) {
      throw new RuntimeError(
        'Runtime.ImportModuleError',
        `Error: Cannot find module '${moduleName}'\nRequire stack:\n- ${__filename}`,
      );
    }
    if (err instanceof SyntaxError) {
      throw new RuntimeError('Runtime.UserCodeSyntaxError', `${err.name}: ${err.message}`);
    }
    throw err;
  }
}

async function loadHandler(root, handlerString) {
  if (handlerString.includes('..')) {
    throw new RuntimeError(
      'Runtime.MalformedHandlerName',
      `'${handlerString}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const slash = handlerString.lastIndexOf('/');
  const moduleRoot = handlerString.slice(0, slash + 1);
  const rest = handlerString.slice(slash + 1);
  const match = /^([^.]*)\.(.*)$/.exec(rest);
  if (!match) {
    throw new RuntimeError('Runtime.MalformedHandlerName', 'Bad handler');
  }
  const [, moduleName, handlerPath] = match;
  const mod = await loadModule(root, moduleRoot, moduleName);
  let fn = mod;
  for (const key of handlerPath.split('.')) {
    fn = fn === undefined || fn === null ? undefined : fn[key];
  }
  if (fn === undefined || fn === null) {
    throw new RuntimeError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  }
  if (typeof fn !== 'function') {
    throw new RuntimeError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  }
  return fn;
}

// ---------------------------------------------------------------- response streaming

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HTTP_INTEGRATION = 'application/vnd.awslambda.http-integration-response';
const ERROR_TYPE_TRAILER = 'Lambda-Runtime-Function-Error-Type';
const ERROR_BODY_TRAILER = 'Lambda-Runtime-Function-Error-Body';

// The responseStream a streaming handler writes to. Its first write opens a chunked POST of
// /invocation/<id>/response with Lambda-Runtime-Function-Response-Mode: streaming, and every
// write goes through to it as it is made (the write's callback waits for the socket, so a slow
// reader slows the writer). An error after the stream began goes in the trailers: its type,
// and its JSON body base64-encoded.
class ResponseStream extends Writable {
  constructor(requestId) {
    super();
    this.requestId = requestId;
    this.contentType = 'application/octet-stream';
    this.req = undefined;
    // Settles once the Runtime API has answered the POST.
    this.answered = new Promise((resolve, reject) => {
      this.answer = resolve;
      this.refuse = reject;
    });
    this.answered.catch(() => {});
  }

  open() {
    if (this.req) {
      return this.req;
    }
    this.req = http.request(
      {
        host: endpoint.host,
        port: endpoint.port,
        method: 'POST',
        path: `${API_VERSION}/invocation/${this.requestId}/response`,
        agent,
        headers: {
          'Lambda-Runtime-Function-Response-Mode': 'streaming',
          'Transfer-Encoding': 'chunked',
          Trailer: `${ERROR_TYPE_TRAILER}, ${ERROR_BODY_TRAILER}`,
          'Content-Type': this.contentType,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => this.answer({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', this.refuse);
      },
    );
    this.req.on('error', this.refuse);
    return this.req;
  }

  _write(chunk, encoding, callback) {
    this.open().write(chunk, encoding, callback);
  }

  _final(callback) {
    const req = this.open();
    if (this.failure) {
      req.addTrailers({
        [ERROR_TYPE_TRAILER]: this.failure.errorType,
        [ERROR_BODY_TRAILER]: Buffer.from(JSON.stringify(this.failure)).toString('base64'),
      });
    }
    req.end(callback);
  }

  setContentType(contentType) {
    if (this.req) {
      throw new Error('Cannot set content-type, too late.');
    }
    this.contentType = contentType;
  }

  // Ends the stream (after what was written before) with an error in its trailers.
  fail(err) {
    this.failure = toErrorBody(err);
    logError('Invoke Error', this.failure);
    this.end();
  }
}

globalThis.awslambda = {
  streamifyResponse(handler) {
    handler[STREAMING] = 'response';
    return handler;
  },
  HttpResponseStream: {
    // The HTTP status, headers and cookies go first, as JSON, then 8 NUL bytes.
    from(stream, metadata) {
      stream.setContentType(HTTP_INTEGRATION);
      stream.write(JSON.stringify(metadata || {}));
      stream.write(Buffer.alloc(8));
      return stream;
    },
  },
};

// Runs a streaming handler to its end: the stream ended when it returns (if it did not end it),
// an error posted to /error if nothing was written yet, else sent in the stream's trailers.
async function runStreamingHandler(handler, event, context, requestId) {
  const stream = new ResponseStream(requestId);
  const finished = new Promise((resolve) => {
    stream.on('finish', resolve);
    stream.on('error', resolve);
  });
  let error;
  try {
    await handler(event, stream, context);
  } catch (err) {
    error = err === undefined || err === null ? new Error('handled') : err;
  }
  if (error !== undefined && !stream.req) {
    await postError(requestId, error);
    return;
  }
  if (error !== undefined && !stream.writableEnded) {
    stream.fail(error);
  } else {
    if (error !== undefined) {
      logError('Invoke Error', toErrorBody(error));
    }
    if (!stream.writableEnded) {
      stream.end();
    }
  }
  await finished;
  try {
    const res = await stream.answered;
    if (res.status >= 400 && res.status !== 413) {
      stdoutWrite(`RustStack runtime: streamed response answered ${res.status}: ${res.body.toString()}\n`);
    }
  } catch (err) {
    stdoutWrite(`RustStack runtime: streamed response failed: ${err && err.message}\n`);
  }
}

// ---------------------------------------------------------------- one invocation

function parseJsonHeader(value) {
  if (!value) {
    return undefined;
  }
  try {
    return JSON.parse(value);
  } catch (_) {
    return undefined;
  }
}

function makeContext(headers) {
  const deadline = parseInt(headers['lambda-runtime-deadline-ms'], 10);
  const env = process.env;
  const context = {
    callbackWaitsForEmptyEventLoop: true,
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context']),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity']),
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
  };
  const tenant = headers['lambda-runtime-aws-tenant-id'];
  if (tenant) {
    context.tenantId = tenant;
  }
  return context;
}

// Runs the handler; resolves to {value} or {error} the way the Lambda runtime decides.
function runHandler(handler, event, context) {
  return new Promise((resolve) => {
    let settled = false;
    let result = { value: null };
    let waiting = false;
    const finish = (r) => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const whenLoopEmpty = () => {
      if (!waiting) {
        waiting = true;
        process.once('beforeExit', () => finish(result));
      }
    };
    const callback = (err, value) => {
      if (settled) {
        return;
      }
      result = err === undefined || err === null ? { value } : { error: err };
      if (context.callbackWaitsForEmptyEventLoop) {
        whenLoopEmpty();
      } else {
        finish(result);
      }
    };
    context.done = callback;
    context.succeed = (value) => callback(null, value);
    context.fail = (err) => callback(err === undefined || err === null ? 'handled' : err);
    let returned;
    try {
      returned = handler(event, context, callback);
    } catch (err) {
      finish({ error: err });
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then(
        (value) => finish({ value }),
        (err) => finish({ error: err === undefined || err === null ? new Error('Unhandled rejection') : err }),
      );
    } else {
      // Neither a promise nor (yet) a callback: the answer is whatever the callback gives
      // by the time the event loop is empty, else null.
      whenLoopEmpty();
    }
  });
}

async function invokeOnce(handler) {
  const next = await call('GET', '/invocation/next');
  const headers = next.headers;
  const requestId = headers['lambda-runtime-aws-request-id'];
  currentRequestId = requestId;
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }
  let event;
  try {
    event = JSON.parse(next.body.toString('utf8'));
  } catch (err) {
    await postError(requestId, new RuntimeError('Runtime.UnmarshalError', `Unable to parse the event: ${err.message}`));
    return;
  }
  if (handler[STREAMING] === 'response') {
    await runStreamingHandler(handler, event, makeContext(headers), requestId);
    return;
  }
  const outcome = await runHandler(handler, event, makeContext(headers));
  if ('error' in outcome) {
    await postError(requestId, outcome.error);
    return;
  }
  let body;
  try {
    body = JSON.stringify(outcome.value === undefined ? null : outcome.value);
    if (body === undefined) {
      body = 'null'; // functions and symbols
    }
  } catch (err) {
    await postError(requestId, new RuntimeError('Runtime.MarshalError', `Unable to stringify the response: ${err.message}`));
    return;
  }
  await post(`/invocation/${requestId}/response`, body);
}

// ---------------------------------------------------------------- main

let handlerLoaded = false;

function onFatal(err, code, type) {
  const error = type ? new RuntimeError(type, err instanceof Error ? `${err.name}: ${err.message}` : String(err)) : err;
  if (!handlerLoaded) {
    failInit(error);
    return;
  }
  const done = () => process.exit(code);
  if (currentRequestId) {
    postError(currentRequestId, error).then(done, done);
  } else {
    logError('Uncaught Exception', toErrorBody(error));
    done();
  }
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (err) => onFatal(err, 129));
  process.on('unhandledRejection', (reason) => onFatal(reason, 128, 'Runtime.UnhandledPromiseRejection'));
  const root = process.env.LAMBDA_TASK_ROOT || process.cwd();
  let handler;
  try {
    handler = await loadHandler(root, process.env._HANDLER || '');
  } catch (err) {
    await failInit(err);
    return;
  }
  handlerLoaded = true;
  for (;;) {
    await invokeOnce(handler);
  }
}

main().catch((err) => {
  stdoutWrite(`RustStack runtime: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});

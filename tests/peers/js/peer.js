// nsqjs 0.13.0 peer for the interop tests (tests/tests/interop_clients.rs). Run with node and
// NODE_PATH pointing at the nsqjs install (scripts/install-peers.sh). Same command line and report
// as tests/peers/go/cmd/nsq-peer (see its header):
//
//   peer.js pub|sub|both --topic T [--channel C] --count N
//           (--nsqd-tcp HOST:PORT)... | (--lookupd-http HOST:PORT)...
//           [--body-size B] [--batch K] [--max-in-flight K] [--timeout SECONDS]
//           [--tls --tls-ca FILE [--tls-server-name NAME]] [--snappy] [--deflate] [--hold]
//
// nsqjs quirks that matter here:
// * TLS: only key/cert/ca/tlsVerification reach tls.connect, which is given the raw socket, so
//   the name verified is the connect host; --tls-server-name is accepted and logged, not used.
// * snappy needs the optional `snappystream` package (installed by package-lock.json).
// * Writer.publish(topic, array, cb) sends MPUB; it does not reconnect (nsqjs#69).
'use strict'

const fs = require('fs')
const nsq = require('nsqjs')

const CLIENT = 'nsqjs'
const started = process.hrtime.bigint()

function log(...args) {
  console.error(`[nsq-peer nsqjs] ${new Date().toISOString()}`, ...args)
}

function usage(msg) {
  log(`usage error: ${msg}`)
  process.exit(2)
}

function parseArgs(argv) {
  const a = {
    mode: argv[0],
    nsqdTcp: [],
    lookupdHttp: [],
    bodySize: 16,
    batch: 100,
    maxInFlight: 200,
    timeout: 60,
  }
  if (!['pub', 'sub', 'both'].includes(a.mode)) usage(`unknown mode ${a.mode}`)
  const flags = new Set(['--tls', '--snappy', '--deflate', '--hold'])
  const numbers = {
    '--count': 'count',
    '--body-size': 'bodySize',
    '--batch': 'batch',
    '--max-in-flight': 'maxInFlight',
    '--timeout': 'timeout',
  }
  const strings = {
    '--topic': 'topic',
    '--channel': 'channel',
    '--tls-ca': 'tlsCa',
    '--tls-server-name': 'tlsServerName',
  }
  for (let i = 1; i < argv.length; i++) {
    const f = argv[i]
    if (flags.has(f)) {
      a[f.slice(2)] = true
      continue
    }
    const v = argv[++i]
    if (v === undefined) usage(`${f} needs a value`)
    if (f === '--nsqd-tcp') a.nsqdTcp.push(v)
    else if (f === '--lookupd-http') a.lookupdHttp.push(v)
    else if (f in numbers) a[numbers[f]] = Number(v)
    else if (f in strings) a[strings[f]] = v
    else usage(`unknown flag ${f}`)
  }
  if (!a.topic || !(a.count > 0) || !(a.batch > 0)) usage('--topic and positive --count/--batch are required')
  if (a.mode !== 'sub' && a.nsqdTcp.length === 0) usage('pub needs --nsqd-tcp')
  if (a.mode !== 'pub' && (!a.channel || a.nsqdTcp.length + a.lookupdHttp.length === 0)) {
    usage('sub needs --channel and --nsqd-tcp or --lookupd-http')
  }
  if (a.tls && !a.tlsCa) usage('--tls needs --tls-ca')
  return a
}

// The message with index i: its decimal index, '|', then '.' up to size bytes.
function body(i, size) {
  const s = `${i}|`
  return Buffer.from(s + '.'.repeat(Math.max(0, size - s.length)))
}

function connOptions(a) {
  const o = {snappy: !!a.snappy, deflate: !!a.deflate}
  if (a.tls) {
    if (a.tlsServerName) log(`nsqjs cannot set the TLS server name; ignoring ${a.tlsServerName}`)
    Object.assign(o, {tls: true, tlsVerification: true, ca: fs.readFileSync(a.tlsCa)})
  }
  return o
}

// Rejects with `what` once the deadline (ms since epoch) passes.
function withDeadline(promise, deadline, what) {
  let timer
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout: ${what()}`)), Math.max(0, deadline - Date.now()))
  })
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer))
}

async function publish(a, report, deadline) {
  const [host, port] = a.nsqdTcp[0].split(':')
  const writer = new nsq.Writer(host, Number(port), connOptions(a))
  try {
    await withDeadline(
      new Promise((resolve, reject) => {
        writer.once('ready', resolve)
        writer.once('error', reject)
        writer.connect()
      }),
      deadline,
      () => `connecting the writer to ${a.nsqdTcp[0]}`
    )
    for (let i = 0; i < a.count; i += a.batch) {
      const n = Math.min(a.batch, a.count - i)
      const msgs = n === 1 ? body(i, a.bodySize) : Array.from({length: n}, (_, j) => body(i + j, a.bodySize))
      await withDeadline(
        new Promise((resolve, reject) =>
          writer.publish(a.topic, msgs, (err) => (err ? reject(new Error(`publish of messages ${i}..${i + n - 1}: ${err}`)) : resolve()))
        ),
        deadline,
        () => `publish of messages ${i}..${i + n - 1}`
      )
      report.published += n
    }
    log(`published ${report.published} to ${a.nsqdTcp[0]}/${a.topic}`)
  } finally {
    writer.close()
  }
}

async function consume(a, report, deadline) {
  const seen = new Set()
  let bad = null
  const reader = new nsq.Reader(a.topic, a.channel, {
    ...connOptions(a),
    maxInFlight: a.maxInFlight,
    ...(a.lookupdHttp.length ? {lookupdHTTPAddresses: a.lookupdHttp} : {nsqdTCPAddresses: a.nsqdTcp}),
  })
  // Connection problems are logged; the deadline turns a stuck reader into a failure.
  reader.on('error', (err) => log(`reader error: ${err}`))
  reader.on('nsqd_closed', (host, port) => log(`nsqd ${host}:${port} closed`))
  try {
    await withDeadline(
      new Promise((resolve) => {
        reader.on('message', (msg) => {
          report.received++
          const text = msg.body.toString()
          const sep = text.indexOf('|')
          const i = sep > 0 ? Number(text.slice(0, sep)) : -1
          if (!(Number.isInteger(i) && i >= 0 && i < a.count)) bad = bad || `unexpected body ${JSON.stringify(text)}`
          else if (seen.has(i)) report.duplicates++
          else seen.add(i)
          msg.finish() // whatever it was: a bad body is reported, not redelivered
          if (seen.size === a.count) resolve()
        })
        reader.connect()
      }),
      deadline,
      () => `${seen.size} distinct of ${a.count} after ${report.received} received`
    )
  } catch (e) {
    report.distinct = seen.size
    reader.close()
    throw e
  }
  report.distinct = seen.size
  if (bad) {
    reader.close()
    throw new Error(bad)
  }
  if (a.hold) {
    emit(report)
    log('holding connections until stdin closes')
    await new Promise((resolve) => {
      process.stdin.on('end', resolve)
      process.stdin.resume()
    })
  }
  reader.close()
}

let emitted = false
function emit(report) {
  if (emitted) return
  emitted = true
  report.seconds = Number(process.hrtime.bigint() - started) / 1e9
  process.stdout.write(JSON.stringify(report) + '\n')
}

async function main() {
  const a = parseArgs(process.argv.slice(2))
  const report = {client: CLIENT, mode: a.mode, published: 0, received: 0, distinct: 0, duplicates: 0, seconds: 0}
  const deadline = Date.now() + a.timeout * 1000
  let status = 0
  try {
    if (a.mode !== 'sub') await publish(a, report, deadline)
    if (a.mode !== 'pub') await consume(a, report, deadline)
  } catch (e) {
    log(`FAILED: ${e.message}`)
    report.error = e.message
    status = 1
  }
  emit(report)
  // Exit once stdout is written: nsqjs keeps timers (lookupd polling) alive after close().
  process.stdout.write('', () => process.exit(status))
}

main()

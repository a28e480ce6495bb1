// One end of a ring in its own worker thread, for ring-workers.test.ts. Plain JS on purpose:
// it loads the built @pvsim/ring exactly as a daemon would.
import { parentPort, workerData } from 'node:worker_threads';
import { BackRing, EvtchnDoorbells, FrontRing, SharedRing, msgpackSlotCodec } from '@pvsim/ring';

const { role, pages, slotBytes, frontBells, backBells, frontPort, backPort, total, seed } = workerData;
// Typed arrays over SharedArrayBuffers cross postMessage as views of the same memory.
const sring = new SharedRing(pages, slotBytes);
const codec = msgpackSlotCodec({ slotBytes, structures: [['seq', 'pad'], ['seq', 'sum']] });
const mine = EvtchnDoorbells.attach(role === 'front' ? frontBells : backBells);
const peer = EvtchnDoorbells.attach(role === 'front' ? backBells : frontBells);
const myPort = role === 'front' ? frontPort : backPort;
const peerPort = role === 'front' ? backPort : frontPort;
const waiter = mine.waiter(0);
// A pending Atomics.waitAsync does not keep a worker alive: hold the loop open until done.
const keepAlive = setInterval(() => {}, 1 << 30);

let rng = seed >>> 0;
const rand = (n) => {
  rng = (Math.imul(rng, 1664525) + 1013904223) >>> 0;
  return rng % n;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pad = (seq) => 'x'.repeat(seq % 23);

async function runFront() {
  const front = new FrontRing(sring, codec, codec);
  let seq = 0;
  let rspSeq = 0;
  let waits = 0;
  let idles = 0;
  while (rspSeq < total) {
    const gen = waiter.generation();
    waiter.takePending(() => {});
    // A burst of random size, as much as the ring takes.
    let burst = 1 + rand(300);
    while (burst-- > 0 && seq < total && !front.full()) {
      const r = front.pushRequest({ seq, pad: pad(seq) });
      if (!r.ok) throw new Error(`push refused: ${JSON.stringify(r.error)}`);
      seq++;
    }
    if (front.pushRequestsAndCheckNotify()) peer.raise(peerPort);
    while (front.unconsumedResponses() > 0) {
      const r = front.takeResponse();
      if (!r.ok) throw new Error(`bad response slot: ${JSON.stringify(r.error)}`);
      if (r.value.seq !== rspSeq) throw new Error(`response ${r.value.seq} where ${rspSeq} was due`);
      if (r.value.sum !== (rspSeq * 31 + (rspSeq % 23)) % 1000003) throw new Error(`bad checksum for ${rspSeq}`);
      rspSeq++;
    }
    if (front.broken) throw new Error('front ring broken');
    // Now and then, go quiet so the backend idles and sleeps in Atomics.waitAsync.
    if (rand(2000) === 0) {
      idles++;
      await sleep(1 + rand(3));
      continue;
    }
    if ((front.full() || seq === total) && rspSeq < total && !front.finalCheckForResponses()) {
      waits++;
      await waiter.wait(gen, { spinUs: rand(2) ? 0 : 30 });
    }
  }
  return { sent: seq, received: rspSeq, waits, idles };
}

async function runBack() {
  const back = new BackRing(sring, codec, codec);
  let expect = 0;
  let sleeps = 0;
  while (expect < total) {
    const gen = waiter.generation();
    waiter.takePending(() => {});
    let n = 0;
    while (back.unconsumedRequests() > 0) {
      const r = back.takeRequest();
      if (!r.ok) throw new Error(`bad request slot: ${JSON.stringify(r.error)}`);
      const { seq, pad: p } = r.value;
      if (seq !== expect) throw new Error(`request ${seq} where ${expect} was due (lost, duplicated or reordered)`);
      if (p !== pad(seq)) throw new Error(`payload of ${seq} corrupted`);
      expect++;
      const rr = back.pushResponse({ seq, sum: (seq * 31 + p.length) % 1000003 });
      if (!rr.ok) throw new Error(`response refused: ${JSON.stringify(rr.error)}`);
      if (++n % 64 === 0 && back.pushResponsesAndCheckNotify()) peer.raise(peerPort);
    }
    if (back.pushResponsesAndCheckNotify()) peer.raise(peerPort);
    if (back.broken) throw new Error('back ring broken');
    if (expect < total && !back.finalCheckForRequests()) {
      sleeps++;
      await waiter.wait(gen);
    }
  }
  return { received: expect, sleeps };
}

(role === 'front' ? runFront() : runBack()).then(
  (r) => {
    clearInterval(keepAlive);
    parentPort.postMessage({ ok: true, ...r });
  },
  (e) => {
    clearInterval(keepAlive);
    parentPort.postMessage({ ok: false, error: String(e?.stack ?? e) });
  },
);
void myPort;

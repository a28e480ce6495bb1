/** The piscina task of the ring benchmark: answer a blkif-like request with a small response. */
import { makeRsp, type BlkReq, type BlkRsp } from './protocol.js';

export default function answer(req: BlkReq): BlkRsp {
  return makeRsp(req.id, req.op);
}

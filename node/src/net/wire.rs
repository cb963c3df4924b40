//! The request-response codec of `/corral/task/1` and `/corral/blob/1`: one
//! frame of the protocol crate's codec per stream direction, read with a
//! hard size bound before anything is decoded (DESIGN §7).

use std::io;
use std::marker::PhantomData;

use corral_protocol::codec::{self, WireMessage};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The task protocol: offers, cancels, results.
pub const TASK_PROTOCOL: StreamProtocol = StreamProtocol::new("/corral/task/1");
/// The blob protocol: modules, trees, inputs and outputs by hash.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/corral/blob/1");

/// A codec for one request type and one response type.
pub struct FrameCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for FrameCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

async fn read_frame<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: WireMessage,
{
    let mut bytes = Vec::new();
    // One byte more than the bound tells an oversized frame from a full one.
    io.take(M::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() > M::MAX_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame larger than {} bytes", M::MAX_BYTES),
        ));
    }
    codec::decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T>(io: &mut T, frame: Vec<u8>) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    io.write_all(&frame).await?;
    io.close().await
}

impl<Req, Resp> request_response::Codec for FrameCodec<Req, Resp>
where
    Req: WireMessage + Send + 'static,
    Resp: WireMessage + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, codec::encode(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, codec::encode(&resp)).await
    }
}

#[cfg(test)]
mod tests {
    use corral_protocol::hash::ContentHash;
    use corral_protocol::messages::{BlobRequest, BlobResponse};
    use libp2p::request_response::Codec;

    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut codec = FrameCodec::<BlobRequest, BlobResponse>::default();
        let request = BlobRequest {
            hash: ContentHash::of(b"x"),
            offset: 3,
            len: 10,
        };
        let mut buf = futures::io::Cursor::new(Vec::new());
        codec
            .write_request(&BLOB_PROTOCOL, &mut buf, request.clone())
            .await
            .expect("write");
        let mut read = futures::io::Cursor::new(buf.into_inner());
        let back = codec
            .read_request(&BLOB_PROTOCOL, &mut read)
            .await
            .expect("read");
        assert_eq!(back, request);

        let mut huge = futures::io::Cursor::new(vec![0u8; 200]);
        let err = codec
            .read_request(&BLOB_PROTOCOL, &mut huge)
            .await
            .expect_err("a 200-byte blob request is out of bounds");
        assert!(err.to_string().contains("larger than"), "{err}");

        let mut garbage = futures::io::Cursor::new(vec![9u8; 10]);
        assert!(
            codec
                .read_request(&BLOB_PROTOCOL, &mut garbage)
                .await
                .is_err()
        );
    }
}

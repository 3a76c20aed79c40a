extension FrameWriter {
    /// Sends bytes the caller hands over as data frames. Up to 1 MiB (a blob of a data file,
    /// most of a restore) they go out as the frame's payload as they are, or through shared
    /// memory when there is some and they are not small (`inlineLimit`).
    public func sendData(_ bytes: [UInt8]) throws {
        if bytes.isEmpty { return }
        if bytes.count <= FrameWriter.dataPiece && (shared == nil || bytes.count <= FrameWriter.inlineLimit) {
            try send(Frame(kind: .data, payload: bytes))
        } else {
            try bytes.withUnsafeBytes { try sendData($0) }
        }
    }

    /// The largest data frame senders use (docs/plugin-protocol.md).
    public static let dataPiece = 1 << 20

    /// Bytes in memory up to this size cross the pipe even when there is shared memory. A
    /// slot saves two copies in the kernel, which only pays for large pieces; each slot also
    /// makes a round trip (the receiver hands it back once done with it), and a restore's
    /// ~1,900 small files of a few KiB each waited for one: the restore's last phase, those
    /// files, took 0.18–0.23 s with them inline against 0.22–0.27 s through slots.
    public static let inlineLimit = 64 << 10
}

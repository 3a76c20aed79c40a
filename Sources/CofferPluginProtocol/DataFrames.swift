extension FrameWriter {
    /// Sends bytes the caller hands over as data frames. Up to 1 MiB (a blob of a data file,
    /// most of a restore) they go out as the frame's payload as they are, or through shared
    /// memory when there is some.
    public func sendData(_ bytes: [UInt8]) throws {
        if bytes.isEmpty { return }
        if bytes.count <= FrameWriter.dataPiece && shared == nil {
            try send(Frame(kind: .data, payload: bytes))
        } else {
            try bytes.withUnsafeBytes { try sendData($0) }
        }
    }

    /// The largest data frame senders use (docs/plugin-protocol.md).
    public static let dataPiece = 1 << 20
}

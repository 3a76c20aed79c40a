import Foundation

/// Checks a vault's structure, and with `readData` every byte of it.
/// Problems name the object; notes are things that are not damage (the leftovers of an
/// interrupted writer, which a later prune removes).
public struct VaultChecker {
    public struct Problem: Sendable, Codable {
        public let kind: String
        public let name: String
        public let message: String
    }

    public struct Report: Sendable, Codable {
        public var problems: [Problem] = []
        public var notes: [String] = []
        public var packs = 0
        public var indexFiles = 0
        public var manifests = 0
        public var blobsChecked = 0
        public var bytesRead: Int64 = 0
        public var ok: Bool { problems.isEmpty }
    }

    let vault: Vault

    public init(vault: Vault) { self.vault = vault }

    public func run(readData: Bool, progress: (@Sendable (String) -> Void)? = nil) throws -> Report {
        var report = Report()
        let backend = vault.backend
        func problem(_ kind: ObjectKind, _ name: String, _ message: String) {
            report.problems.append(Problem(kind: kind.singular, name: name, message: message))
        }

        // Key slots: each must parse (opening needs its secret, which we do not have).
        for name in try backend.list(.keys) {
            let slot = try? JSON.decoder().decode(KeySlot.self, from: Data(try backend.read(.keys, name)))
            if slot == nil { problem(.keys, name, "unreadable key slot") }
        }

        // Index files: each must match its name and open; a bad one is reported, not fatal.
        let indexNames = try backend.list(.index)
        report.indexFiles = indexNames.count
        let bad = try vault.index.load(backend: backend, key: vault.key.dataKey, strict: false)
        for b in bad { problem(.index, b.name, b.reason) }
        var indexed: [PackID: [PackEntry]] = [:]
        for name in indexNames where !bad.contains(where: { $0.name == name }) {
            // A file a concurrent prune superseded since the listing is simply gone
            // (docs/decisions/009); its successor is among the loaded ones.
            guard let file = try? IndexFile.read(backend: backend, name: name, key: vault.key.dataKey) else { continue }
            for pack in file.packs { indexed[pack.id, default: []].append(contentsOf: pack.entries) }
        }

        // Packs: every indexed pack must exist with a header that agrees with the index.
        let packNames = Set(try backend.list(.packs))
        report.packs = packNames.count
        for (pack, _) in indexed where !packNames.contains(pack.hex) {
            problem(.packs, pack.hex, "missing (named by the index)")
        }
        let unindexed = packNames.filter { PackID(hex: $0).map { indexed[$0] == nil } ?? true }
        if !unindexed.isEmpty {
            report.notes.append("\(unindexed.count) pack(s) not in any index (left by an interrupted backup; prune removes them)")
        }
        // The index is loaded (minus bad files, reported above): the reader must not reload it.
        let reader = ArtifactReader(loadedVault: vault)
        for (n, name) in packNames.sorted().enumerated() {
            progress?("pack \(n + 1)/\(packNames.count)")
            do {
                try checkPack(name: name, indexed: PackID(hex: name).flatMap { indexed[$0] }, readData: readData,
                              report: &report)
            } catch let error as VaultError {
                switch error {
                case .corruptObject(let kind, let name, let reason): problem(kind, name, reason)
                case .missingObject(let kind, let name): problem(kind, name, "missing")
                default: problem(.packs, name, error.description)
                }
            }
        }

        // Manifests: each must open, and every blob it names must be indexed in a present pack.
        let manifestNames = try backend.list(.manifests)
        report.manifests = manifestNames.count
        for id in manifestNames {
            do {
                let m = try vault.readManifest(id: id)
                for artifact in m.artifacts {
                    for listID in artifact.lists?.ids ?? [] {
                        try requirePresent(listID, packNames: packNames, manifest: id)
                    }
                    var total: Int64 = 0
                    for blob in try reader.contentIDs(artifact) {
                        total += Int64(try requirePresent(blob, packNames: packNames, manifest: id).entry.rawLength)
                    }
                    guard total == artifact.size else {
                        throw VaultError.corruptObject(kind: .manifests, name: id,
                                                       reason: "artifact \(artifact.name) is \(artifact.size) bytes but its blobs hold \(total)")
                    }
                }
            } catch let error as VaultError {
                switch error {
                case .corruptObject(.manifests, _, let reason): problem(.manifests, id, reason)
                default: problem(.manifests, id, error.description)
                }
            }
        }

        let temporaries = try backend.staleTemporaries()
        if !temporaries.isEmpty {
            report.notes.append("\(temporaries.count) temporary file(s) in tmp/ (left by an interrupted writer; never read)")
        }
        return report
    }

    @discardableResult
    private func requirePresent(_ id: BlobID, packNames: Set<String>, manifest: String) throws -> MasterIndex.Location {
        guard let loc = vault.index.lookup(id) else {
            throw VaultError.corruptObject(kind: .manifests, name: manifest, reason: "names blob \(id.hex), which no index holds")
        }
        guard packNames.contains(loc.pack.hex) else {
            throw VaultError.corruptObject(kind: .manifests, name: manifest,
                                           reason: "needs pack \(loc.pack.hex), which is missing")
        }
        return loc
    }

    private func checkPack(name: String, indexed: [PackEntry]?, readData: Bool, report: inout Report) throws {
        let backend = vault.backend
        let size = try backend.size(.packs, name)
        let entries = try readHeader(name: name, size: size)
        var offset: UInt32 = 0
        for e in entries {
            guard e.offset == offset else {
                throw VaultError.corruptObject(kind: .packs, name: name, reason: "header entries are not contiguous")
            }
            offset += e.length
        }
        if let indexed {
            let fromHeader = Dictionary(entries.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            for e in indexed where fromHeader[e.id] != e {
                throw VaultError.corruptObject(kind: .packs, name: name,
                                               reason: "index and pack header disagree about blob \(e.id.hex)")
            }
        }
        guard readData else { return }
        let bytes = try backend.read(.packs, name)
        report.bytesRead += Int64(bytes.count)
        // Every blob, even after a bad one, so the report says how much of the pack is lost.
        var bad: [String] = []
        for e in entries {
            do {
                _ = try vault.openBlob(Array(bytes[Int(e.offset)..<Int(e.offset + e.length)]), entry: e, pack: name)
                report.blobsChecked += 1
            } catch {
                bad.append(e.id.hex)
            }
        }
        if !bad.isEmpty {
            throw VaultError.corruptObject(kind: .packs, name: name,
                                           reason: "\(bad.count) of \(entries.count) blobs fail authentication (first: \(bad[0]))")
        }
    }

    /// The pack's own header, read from its tail.
    func readHeader(name: String, size: Int) throws -> [PackEntry] {
        let backend = vault.backend
        guard size >= 4 else { throw VaultError.corruptObject(kind: .packs, name: name, reason: "truncated (\(size) bytes)") }
        let lenBytes = try backend.read(.packs, name, offset: size - 4, length: 4)
        let headerLength = Int(lenBytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
        guard headerLength >= AESGCM.overhead, headerLength <= size - 4 else {
            throw VaultError.corruptObject(kind: .packs, name: name, reason: "truncated or bad header length")
        }
        let sealed = try backend.read(.packs, name, offset: size - 4 - headerLength, length: headerLength)
        guard SHA256.hex(sealed + lenBytes) == name else {
            throw VaultError.corruptObject(kind: .packs, name: name, reason: "header does not match the pack's name (hash)")
        }
        guard let plain = AESGCM.open(key: vault.key.dataKey, aad: AssociatedData.packHeader, sealed),
              let entries = try? PackFormat.decodeHeader(plain)
        else {
            throw VaultError.corruptObject(kind: .packs, name: name, reason: "header fails authentication (truncated or changed)")
        }
        let covered = entries.last.map { Int($0.offset + $0.length) } ?? 0
        guard covered == size - 4 - headerLength else {
            throw VaultError.corruptObject(kind: .packs, name: name, reason: "header does not cover the pack")
        }
        return entries
    }
}

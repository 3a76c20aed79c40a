import CofferFixtures
import Foundation

/// Runs the built `coffer` with `environment`: exit status, stdout (as text and bytes), stderr.
func runCoffer(_ args: [String], environment: [String: String]) throws -> (status: Int32, out: String, err: String, bytes: Data) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: BuildProducts.directory(containing: "coffer") + "/coffer")
    p.arguments = args
    p.environment = environment
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self), o)
}

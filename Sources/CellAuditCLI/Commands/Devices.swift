import ArgumentParser
import CellAuditAnalysis
import CellAuditCore
import CellAuditOpenCL
import Foundation
import OpenCLKit

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every OpenCL platform and device, the CPU fallback, and what `auto` picks."
    )

    @Flag(help: "Print JSON.")
    var json = false

    struct Listing: Codable {
        struct PlatformEntry: Codable {
            var name: String, vendor: String, version: String
            var devices: [DeviceEntry]
        }
        struct DeviceEntry: Codable {
            var index: Int
            var info: DeviceInfo
        }
        struct CPUEntry: Codable { var backend: String; var threads: Int; var arithmetic: String }
        struct AutoEntry: Codable { var backend: String; var device: Int?; var reason: String }
        var platforms: [PlatformEntry]
        var openclError: String?
        var cpu: CPUEntry
        var auto: AutoEntry
    }

    func run() throws {
        try failing {
            var platforms: [Platform] = []
            var openclError: String?
            do { platforms = try OpenCL.platforms() } catch { openclError = "\(error)" }
            let decision = BackendSelection.autoDecision(devices: platforms.flatMap(\.devices))
            let threads = try hostThreads()
            let listing = Listing(
                platforms: platforms.map { p in
                    .init(name: p.name, vendor: p.vendor, version: p.version,
                          devices: p.devices.map { .init(index: $0.index, info: $0.info) })
                },
                openclError: openclError,
                cpu: .init(backend: "cpu", threads: threads, arithmetic: CPUBackend.arithmetic),
                auto: .init(backend: decision.device == nil ? "cpu" : "opencl", device: decision.device?.index,
                            reason: decision.reason))
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(listing), as: UTF8.self))
                return
            }
            if let openclError { print("OpenCL: \(openclError)") }
            if platforms.isEmpty { print("OpenCL: no platform found") }
            for p in platforms {
                print("platform: \(p.name) (\(p.vendor)), \(p.version)")
                if p.devices.isEmpty { print("  no devices" + (OpenCL.poclCacheProblem(directory: ProcessInfo.processInfo.environment["POCL_CACHE_DIR"]).map { " (\($0))" } ?? "")) }
                for d in p.devices {
                    let i = d.info
                    print("  device \(d.index): \(i.name)")
                    print("    type \(i.type.rawValue), vendor \(i.vendor), \(i.deviceVersion), \(i.openCLCVersion), driver \(i.driverVersion)")
                    print("    \(i.computeUnits) compute units at \(i.maxClockMHz) MHz, max work-group \(i.maxWorkGroupSize), native float vector \(i.nativeFloatVectorWidth), fp64 \(i.supportsFP64 ? "yes" : "no")")
                    print("    global memory \(mib(i.globalMemoryBytes)), largest allocation \(mib(i.maxAllocationBytes)), local memory \(kib(i.localMemoryBytes))")
                }
            }
            print("cpu fallback: pure Swift on \(threads) thread\(threads == 1 ? "" : "s"), \(CPUBackend.arithmetic)")
            if let d = decision.device {
                print("auto picks: opencl device \(d.index) (\(d.info.name))\(decision.forwardOnCPU ? " and cpu for the full forward" : ""): \(decision.reason)")
            } else {
                print("auto picks: cpu: \(decision.reason)")
            }
        }
    }

    func mib(_ bytes: UInt64) -> String { String(format: "%.0f MiB", Double(bytes) / 1_048_576) }
    func kib(_ bytes: UInt64) -> String { String(format: "%.0f KiB", Double(bytes) / 1024) }
}

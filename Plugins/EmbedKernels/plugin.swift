import Foundation
import PackagePlugin

/// Build-tool plugin: every `Kernels/*.cl` file of the package becomes a string constant in
/// generated Swift source, so a binary finds its kernels whatever its working directory and
/// wherever it was installed. The files are declared as inputs: editing a kernel rebuilds.
@main
struct EmbedKernels: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let kernelDir = context.package.directoryURL.appending(path: "Kernels")
        let names = try FileManager.default.contentsOfDirectory(atPath: kernelDir.path)
            .filter { $0.hasSuffix(".cl") || $0.hasSuffix(".h") }
            .sorted()
        let inputs = names.map { kernelDir.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedKernels.swift")
        return [
            .buildCommand(
                displayName: "Embedding \(names.count) OpenCL kernel files",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: [output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}

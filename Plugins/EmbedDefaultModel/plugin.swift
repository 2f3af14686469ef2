import Foundation
import PackagePlugin

/// Build-tool plugin: the bundled models (the digits LSTM family of 8–128 cells; the 64-cell one
/// is `audit`'s default) and their test split become base64 strings in generated Swift source,
/// so `audit` and `capacity` without models work from any directory with nothing beside the binary.
@main
struct EmbedDefaultModel: BuildToolPlugin {
    static let files = [8, 16, 32, 64, 128].map { "digits_lstm\($0).safetensors" } + ["digits_test.safetensors"]

    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let dir = context.package.directoryURL.appending(path: "Tests").appending(path: "Fixtures")
        let inputs = Self.files.map { dir.appending(path: $0) }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedDefaultModel.swift")
        return [
            .buildCommand(
                displayName: "Embedding the default model",
                executable: try context.tool(named: "KernelEmbedder").url,
                arguments: ["--base64", "EmbeddedDefaultModel", output.path] + inputs.map(\.path),
                inputFiles: inputs,
                outputFiles: [output]
            )
        ]
    }
}

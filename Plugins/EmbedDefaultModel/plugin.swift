import Foundation
import PackagePlugin

/// Build-tool plugin: the bundled default model (the 64-cell digits LSTM) and its test split
/// become base64 strings in generated Swift source, so `cellaudit audit` without a model works
/// from any directory with nothing installed beside the binary.
@main
struct EmbedDefaultModel: BuildToolPlugin {
    static let files = ["digits_lstm64.safetensors", "digits_test.safetensors"]

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

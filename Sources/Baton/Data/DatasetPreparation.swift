import Foundation

/// `baton prepare`: text files -> byte-level token shards, the first 90% for training and the
/// last 10% for validation, named as llm.c's scripts name them.
public enum DatasetPreparation {
    public struct Result { public let trainTokens: Int; public let valTokens: Int; public let files: [URL] }

    public static func prepare(textFiles: [URL], outputFolder: URL, name: String = "corpus") throws -> Result {
        guard !textFiles.isEmpty else { throw BatonError("baton prepare: give at least one text file") }
        var bytes: [UInt8] = []
        for file in textFiles {
            guard let data = FileManager.default.contents(atPath: file.path) else {
                throw BatonError("\(file.path): cannot read text file")
            }
            bytes.append(contentsOf: data)
        }
        guard bytes.count >= 20 else { throw BatonError("\(textFiles[0].path): too little text to split (\(bytes.count) bytes)") }
        let split = bytes.count * 9 / 10
        do {
            try FileManager.default.createDirectory(at: outputFolder, withIntermediateDirectories: true)
        } catch { throw BatonError("\(outputFolder.path): cannot create folder (\(error.localizedDescription))") }
        let train = outputFolder.appendingPathComponent("\(name)_train_000000.bin")
        let val = outputFolder.appendingPathComponent("\(name)_val_000000.bin")
        try TokenShard.write(tokens: bytes[..<split].map { UInt16($0) }, to: train)
        try TokenShard.write(tokens: bytes[split...].map { UInt16($0) }, to: val)
        return Result(trainTokens: split, valTokens: bytes.count - split, files: [train, val])
    }
}

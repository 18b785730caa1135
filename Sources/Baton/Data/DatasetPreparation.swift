import Foundation

/// `baton prepare`: text files -> byte-level token shards, the first 90% for training and the
/// last 10% for validation, named as llm.c's scripts name them. Written into a temporary folder
/// and swapped in whole, as the GPT-2 path's (DatasetFolder).
public enum DatasetPreparation {
    public struct Result { public let trainTokens: Int; public let valTokens: Int; public let files: [URL] }

    public static func prepare(
        textFiles: [URL], outputFolder: URL, name: String = "corpus", overwrite: Bool = false
    ) throws -> Result {
        try PrepareInputs.check(textFiles)
        var bytes: [UInt8] = []
        for file in textFiles {
            guard let data = FileManager.default.contents(atPath: file.path) else {
                throw BatonError("\(file.path): cannot read text file")
            }
            bytes.append(contentsOf: data)
        }
        guard bytes.count >= 20 else {
            throw BatonError("\(textFiles[0].path): too little text to split (\(bytes.count) bytes)")
        }
        let split = bytes.count * 9 / 10
        let dataset = try DatasetFolder(out: outputFolder, overwrite: overwrite)
        let names = ["\(name)_train_000000.bin", "\(name)_val_000000.bin"]
        do {
            let tokens = bytes.map { UInt16($0) }
            _ = try ShardSequence<UInt16>.writeShard(tokens[..<split], to: dataset.url(names[0]))
            _ = try ShardSequence<UInt16>.writeShard(tokens[split...], to: dataset.url(names[1]))
            try dataset.commit(overwrite: overwrite)
        } catch {
            dataset.abandon()
            throw error
        }
        return Result(
            trainTokens: split, valTokens: bytes.count - split,
            files: names.map { dataset.target.appendingPathComponent($0) })
    }
}

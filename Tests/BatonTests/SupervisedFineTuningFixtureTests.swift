import Foundation
import XCTest

@testable import Baton
@testable import BatonTestSupport

/// Supervised fine-tuning's loss against transformers with labels = -100 on masked positions
/// (Tests/BatonTests/Fixtures/sft/, scripts/fixtures/make_sft_fixture.py): the batch is Baton's
/// own prepare --sft of the committed conversations, which must give the fixture's tokens and
/// mask; the masked mean and every gradient must equal transformers'; and a step split into
/// micro-batches (each position weighted 1 / the step's count) the same.
class SupervisedFineTuningFixtureTests: FolderTestCase {
    class var family: String { "gpt2" }
    class var tokenizer: String { "gpt2" }

    var fixtureFolder: URL { TestPaths.fixtures.appendingPathComponent("sft/\(Self.family)") }
    var expected: SafeTensors.File!
    var model: GPT!
    var inputs: [Int32] = [], targets: [Int32] = []
    var B = 0, T = 0

    override func setUpWithError() throws {
        try super.setUpWithError()
        expected = try SafeTensors.read(fixtureFolder.appendingPathComponent("expected.safetensors"))
        B = Int(expected.metadata["B"]!)!
        T = Int(expected.metadata["T"]!)!
        let source = try HuggingFaceModel(folder: fixtureFolder)
        model = try GPT(config: source.config, device: Device.cpu())
        try source.load(into: model)
        inputs = try expected.integers("inputs").map(Int32.init)
        targets = try expected.integers("targets").map(Int32.init)
    }

    /// Baton's prepare of the conversations, read as the loader reads it, is the fixture's batch.
    func testPrepareGivesTheFixturesTokensAndMask() throws {
        let preparation = try ConversationPreparation(
            tokenizerFolder: TestPaths.fixtures.appendingPathComponent("tokenizer-json/\(Self.tokenizer)"))
        let out = folder.appendingPathComponent("data")
        _ = try preparation.prepare(
            file: TestPaths.fixtures.appendingPathComponent("sft/conversations.jsonl"), outputFolder: out)
        let dataset = try TokenDataset.open(
            folder: out, split: "train", sequenceLength: T, vocabularySize: model.config.vocabularySize)
        XCTAssert(dataset.hasLossMask)
        let batch = try DataLoader(dataset: dataset, batchSize: B, seed: 0, shuffle: false).batch(at: LoaderPosition())
        XCTAssertEqual(batch.inputs, inputs)
        XCTAssertEqual(batch.targets, targets)
        XCTAssert(targets.contains(-1) && targets.contains { $0 >= 0 }, "the batch should mix masked and counted")
    }

    func testMaskedLossAndGradientsMatchTransformers() throws {
        try model.zeroGradients()
        let loss = try model.forward(inputs: inputs, targets: targets, B: B, T: T, lossScaleForBackward: 1)
        let reference = try expected.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(loss - reference), 1e-5 * abs(reference), "loss \(loss) vs \(reference)")
        try model.backward()
        for spec in model.layout.specs {
            assertClose(
                try model.device.download(model.gradient(spec.name)), try expected.floats("grad." + spec.name),
                rtol: 1e-4, "gradient of \(spec.name)")
        }
    }

    /// The same batch as B micro-batches of one row: the step's loss is the sum over all of them
    /// over the count of all of them (not the mean of their means), and so is the gradient.
    func testAStepOfMicroBatchesAveragesOverTheStepsCountedTargets() throws {
        let optimizer = try AdamW(model: model, beta1: 0.9, beta2: 0.95, epsilon: 1e-8, weightDecay: 0)
        let step = TrainingStep(model: model, optimizer: optimizer)
        let rows = (0..<B).map { row in
            (inputs: Array(inputs[(row * T)..<((row + 1) * T)]), targets: Array(targets[(row * T)..<((row + 1) * T)]))
        }
        let counted = GPT.trainedTargetCount(targets[...])
        let sums = try step.accumulateGradients(microBatches: rows, B: 1, T: T, scale: 1, countedTargets: counted)
        let loss = Float(sums.reduce(0.0) { $0 + Double($1) } / Double(counted))
        let reference = try expected.floats("loss")[0]
        XCTAssertLessThanOrEqual(abs(loss - reference), 1e-5 * abs(reference), "loss \(loss) vs \(reference)")
        for spec in model.layout.specs {
            assertClose(
                try model.device.download(model.gradient(spec.name)), try expected.floats("grad." + spec.name),
                rtol: 1e-4, "accumulated gradient of \(spec.name)")
        }
    }
}

/// The same against a LlamaForCausalLM, with the ChatML format (a tokenizer with <|im_start|>).
final class SupervisedFineTuningLlamaFixtureTests: SupervisedFineTuningFixtureTests {
    override class var family: String { "llama" }
    override class var tokenizer: String { "qwen2" }
    // Linux's XCTest runs only the tests a class declares itself.
    override func testPrepareGivesTheFixturesTokensAndMask() throws {
        try super.testPrepareGivesTheFixturesTokensAndMask()
    }
    override func testMaskedLossAndGradientsMatchTransformers() throws {
        try super.testMaskedLossAndGradientsMatchTransformers()
    }
    override func testAStepOfMicroBatchesAveragesOverTheStepsCountedTargets() throws {
        try super.testAStepOfMicroBatchesAveragesOverTheStepsCountedTargets()
    }
}

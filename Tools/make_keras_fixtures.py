#!/usr/bin/env python3
"""Keras 3 models saved as .keras files, with Keras's own outputs, for CellAudit's native Keras
reader (issue 30, item 2).

Writes Tests/Fixtures/keras/:
    NAME.keras              model.save(...) of a seeded, untrained model
    lstm2_legacy.h5, emb_bigru_legacy.h5   the same models saved with Keras 3's legacy model.save("….h5")
    lstm2_utf8.h5           lstm2_legacy.h5 with its model_config rewritten as a UTF-8 string attribute
    lstm2_keras2.h5         lstm2 written as tf.keras 2 writes model.save("model.h5") (Keras 2 config,
                            fixed-length 'weight_names', ':0' variable names), by keras2_h5 below
    weights_only.weights.h5 lstm2.save_weights(...): variables without the architecture (refused)
    NAME.data.safetensors   inputs (floats [5, 6, 3], or token ids [5, 6] for the embedding
                            model) and outputs: model.predict(inputs)

Models:
    lstm2          Sequential: LSTM(4, return_sequences) → LSTM(3) → Dense(2)
    gru_before     Sequential: GRU(4, reset_after=False) → Dense(3, softmax)   (read as logits:
                   outputs holds the logits, computed by a copy of the model without softmax)
    bi_concat      Bidirectional(LSTM(4)) merge concat → Dense(2)
    bi_sum_seq     Bidirectional(GRU(3, return_sequences)) sum → Dropout → GRU(2, return_sequences)
                   → Dense(2) at every step
    rnn_relu       Sequential: SimpleRNN(4, relu) → Dense(2)
    td_seq         Sequential: LSTM(4, return_sequences) → TimeDistributed(Dense(2)) at every step
    bi_ave         Functional: Bidirectional(SimpleRNN(4, return_sequences)) ave → Bidirectional(SimpleRNN(3)) concat → Dense(1)
    emb_bigru      Functional: Embedding(20, 4) → Bidirectional(GRU(3)) → Dense(2)
    conv_core      Conv1D(4, 3, same) → LSTM(3) → Dense(2); its data holds the Conv1D's outputs as inputs
                   (the core's input) and the whole model's outputs
    deep_head      LSTM(3) → Dense(4, relu) → Dense(2): with --core, a core without a readout
and refusals: bi_mul (merge mode mul), masked (Embedding mask_zero=True), hard_sigmoid
(LSTM recurrent_activation='hard_sigmoid'), mixed (a GRU under an LSTM), conv (Conv1D before the LSTM).

    KERAS_BACKEND=torch python Tools/make_keras_fixtures.py
Needs keras 3 (any backend), numpy and safetensors.
"""
import os

import keras
import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "keras")
L = keras.layers


def save(name, model, inputs, logits_model=None):
    model.save(os.path.join(OUT, name + ".keras"))
    if inputs is not None:
        outputs = (logits_model or model).predict(inputs, verbose=0)
        save_file({"inputs": inputs, "outputs": np.ascontiguousarray(outputs, dtype=np.float32)},
                  os.path.join(OUT, name + ".data.safetensors"))


def keras2_h5(model, path):
    """The model as tf.keras 2 (TensorFlow 2.x) writes `model.save("model.h5")`, written with h5py:
    a Keras 2 config (batch_input_shape, time_major) in the root attribute 'model_config', and each
    layer's variables under model_weights/<layer>/<layer>/<cell>/<var>:0, listed in order by the
    layer's fixed-length 'weight_names' attribute."""
    import json

    import h5py
    config = json.loads(model.to_json())
    for layer in config["config"]["layers"]:
        c = layer["config"]
        if layer["class_name"] == "InputLayer":
            c["batch_input_shape"] = c.pop("batch_shape")
        for inner in [c] + [c[k]["config"] for k in ("layer", "backward_layer") if k in c]:
            if "units" in inner and "return_sequences" in inner:
                inner["time_major"] = False
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.15.0"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        weights = f.create_group("model_weights")
        names = [layer.name for layer in model.layers]
        weights.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
        for layer in model.layers:
            group = weights.create_group(layer.name)
            paths = []
            for v in layer.weights:
                # Keras 3 paths read 'lstm/lstm_cell/kernel'; Keras 2 appended ':0'.
                paths.append(f"{v.path.split('/', 1)[1] if '/' in v.path else v.name}:0")
                group.create_dataset(paths[-1], data=np.asarray(v.numpy()))
            group.attrs["weight_names"] = np.array([p.encode("utf8") for p in paths])


def main():
    os.makedirs(OUT, exist_ok=True)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 6, 3)).astype(np.float32)
    tokens = rng.integers(0, 20, (5, 6)).astype(np.int64)

    lstm2 = keras.Sequential([keras.Input((None, 3)), L.LSTM(4, return_sequences=True), L.LSTM(3), L.Dense(2)])
    save("lstm2", lstm2, x)
    lstm2.save(os.path.join(OUT, "lstm2_legacy.h5"))        # Keras 3's legacy .h5
    import shutil

    import h5py
    shutil.copy(os.path.join(OUT, "lstm2_legacy.h5"), os.path.join(OUT, "lstm2_utf8.h5"))
    with h5py.File(os.path.join(OUT, "lstm2_utf8.h5"), "r+") as f:   # model_config as a UTF-8 string
        text = f.attrs["model_config"]
        del f.attrs["model_config"]
        f.attrs["model_config"] = text if isinstance(text, str) else text.decode("utf8")
    keras2_h5(lstm2, os.path.join(OUT, "lstm2_keras2.h5"))   # as tf.keras 2 writes it
    lstm2.save_weights(os.path.join(OUT, "weights_only.weights.h5"))   # no architecture: refused
    gru = keras.Sequential([keras.Input((None, 3)), L.GRU(4, reset_after=False), L.Dense(3, activation="softmax")])
    logits = keras.Sequential([keras.Input((None, 3)), L.GRU(4, reset_after=False), L.Dense(3)])
    logits.set_weights(gru.get_weights())
    save("gru_before", gru, x, logits)
    save("bi_concat", keras.Sequential([keras.Input((None, 3)), L.Bidirectional(L.LSTM(4)), L.Dense(2)]), x)
    save("bi_sum_seq", keras.Sequential([keras.Input((None, 3)), L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum"),
                                         L.Dropout(0.3), L.GRU(2, return_sequences=True), L.Dense(2)]), x)
    save("td_seq", keras.Sequential([keras.Input((None, 3)), L.LSTM(4, return_sequences=True), L.TimeDistributed(L.Dense(2))]), x)
    save("rnn_relu", keras.Sequential([keras.Input((None, 3)), L.SimpleRNN(4, activation="relu"), L.Dense(2)]), x)
    i = keras.Input((None, 3))
    h = L.Bidirectional(L.SimpleRNN(4, return_sequences=True), merge_mode="ave")(i)
    h = L.Bidirectional(L.SimpleRNN(3))(h)
    save("bi_ave", keras.Model(i, L.Dense(1)(h)), x)
    i = keras.Input((None,), dtype="int64")
    h = L.Embedding(20, 4)(i)
    h = L.Bidirectional(L.GRU(3))(h)
    emb = keras.Model(i, L.Dense(2)(h))
    save("emb_bigru", emb, tokens)
    emb.save(os.path.join(OUT, "emb_bigru_legacy.h5"))

    # A convolutional front end and a deeper head around the recurrent core (read with --core).
    conv_core = keras.Sequential([keras.Input((None, 3)), L.Conv1D(4, 3, padding="same"), L.LSTM(3), L.Dense(2)])
    conv_core.save(os.path.join(OUT, "conv_core.keras"))
    front = keras.Sequential([keras.Input((None, 3)), conv_core.layers[0]])
    save_file({"inputs": np.ascontiguousarray(front.predict(x, verbose=0), dtype=np.float32),
               "outputs": np.ascontiguousarray(conv_core.predict(x, verbose=0), dtype=np.float32)},
              os.path.join(OUT, "conv_core.data.safetensors"))
    keras.Sequential([keras.Input((None, 3)), L.LSTM(3), L.Dense(4, activation="relu"), L.Dense(2)]).save(os.path.join(OUT, "deep_head.keras"))
    save("bi_mul", keras.Sequential([keras.Input((None, 3)), L.Bidirectional(L.LSTM(2), merge_mode="mul"), L.Dense(2)]), None)
    save("masked", keras.Sequential([keras.Input((None,), dtype="int64"), L.Embedding(20, 4, mask_zero=True), L.LSTM(2), L.Dense(2)]), None)
    save("hard_sigmoid", keras.Sequential([keras.Input((None, 3)), L.LSTM(2, recurrent_activation="hard_sigmoid"), L.Dense(2)]), None)
    save("mixed", keras.Sequential([keras.Input((None, 3)), L.GRU(3, return_sequences=True), L.LSTM(2), L.Dense(2)]), None)
    save("conv", keras.Sequential([keras.Input((None, 3)), L.Conv1D(4, 3), L.LSTM(2), L.Dense(2)]), None)
    print("wrote", sorted(os.listdir(OUT)), "with keras", keras.__version__, "backend", keras.backend.backend())


if __name__ == "__main__":
    main()

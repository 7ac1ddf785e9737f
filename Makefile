# fastmotion: `make test` and `make demo` set themselves up on a fresh machine (Python 3.11 + pip).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch 2.14.1 + torchvision 0.29.1 (CUDA 13.0 build; runs on CPU, matches nvcc 13.0)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
export CUDA_HOME ?= /usr/local/cuda
# Compile the CUDA kernels only where a GPU can run them; `make cuda-check` compiles them everywhere.
FASTMOTION_CUDA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
TORCH_CUDA_ARCH_LIST ?= 9.0
PYTEST_ARGS ?=

# `make demo`: the synthetic corpus, single random views, the 2D prior, the ML-RQ, lifting evaluation and GIFs;
# then text-to-motion: the evaluator (on held-out 3D), the masked and residual transformers, T2M metrics, samples.
# DEMO_CONFIG=full trains the Free3D-size models (for a GPU).
DEMO ?= demo
DEMO_CONFIG ?= small
FM := $(PY) -m fastmotion.cli
T2M_REPEATS ?= 3
# masked-transformer steps; empty takes the preset (small: 3000). `make real-t2m MASK_STEPS=1500` gives the README's
# real-caption figures (measured before the preset doubled; docs/t2m-tuning.md).
MASK_STEPS ?=
DEMO_PROMPTS := a_person_jumps_forward someone_waves_hello a_person_runs_forward

# `make videomdm` (after `make demo`): VideoMDM's demo, the recipe of experiments/Makefile (VideoMDM against
# the MDM trained on the teacher's 3D, same model and steps; anchored: docs/methods/videomdm.md).
ANCHORED := --root teacher --high-noise plain-mdm --threshold 24 --buckets 3
VIDEOMDM_STEPS ?= 1500

# `make demo-detector` (after `make demo`): the demo's recipe on what a 2D pose detector gives: the synthetic
# corpus rendered as COCO-17 keypoints with detector noise and no camera pose, imported with `data import`; its
# lifting beside the demo's ML-RQ (exact SMPL-22 2D, known cameras) on PA-MPJPE-12 (the 12 limb joints), and the
# real CMU clips rendered and imported the same way, lifted by it.
DET ?= $(DEMO)/detector
CMU ?= ../shared/data/cmu
DETECTOR_2D := --views 1 --seed 0 --layout coco17 --noise detector --no-camera

# `make mvlift` (after `make demo`; on its own it makes the demo's 2D first): MVLift on the synthetic corpus, small
# config: stage 1 (`train mvlift`), then MVLIFT_CLIPS test clips lifted by stage 2 + 3D recovery and by the paper's
# ablations (stage 1 alone; SDS on the 3D's projections without lines), beside zero depth, the demo's ML-RQ and
# VideoMDM (when `make demo` / `make videomdm` made them) on the same clips, in both protocols.
MVLIFT_CLIPS ?= 50
MV := $(DEMO)/mvlift
MV_EVAL = --data $(DEMO)/synth2d --split test --limit $(MVLIFT_CLIPS)
VIDEOMDM_RUN := $(DEMO)/videomdm/videomdm/last.pt
# `make mvlift-coco` (after `make demo`): MVLift on another skeleton: the same clips and cameras rendered as exact
# COCO-17 keypoints, imported as they are (`data import --native`), stage 1 trained on them and MVLIFT_CLIPS test
# clips lifted by stage 2, scored on the hips' midpoint and the 12 limb joints beside zero depth.
MVC := $(DEMO)/mvlift-coco

# `make compare` (after `make demo`): the three methods (four lifters) on the same MVLIFT_CLIPS test clips (every 4th):
# ML-RQ, VideoMDM (guided lifting), MVLift stage 2 and MVLift feed-forward (stage 3: the multi-view data from stage 2
# on COMPARE_TRAIN_CLIPS train clips; stage 4: the multi-view diffusion model), beside zero depth, in both protocols
# with the time per clip. `make mvlift`'s stage 1 and `make videomdm`'s VideoMDM are reused where they exist.
CMP := $(DEMO)/compare
COMPARE_TRAIN_CLIPS ?= 250
COMPARE_EVAL = --data $(DEMO)/synth2d --split test --stride 4 --limit $(MVLIFT_CLIPS)
COMPARE_RUNS := eval-mlrq eval-videomdm eval-stage2 eval-feedforward
COMPARE_NAMES := --name ML-RQ --name "VideoMDM (guided)" --name "MVLift (stage 2)" --name "MVLift (feed-forward)"

# `make real`: the three methods on real motion capture (REAL: a 3D folder in HumanML3D layout, e.g. Bandai-2 in
# ../shared/data/bandai2; never part of the tests). One random view per clip, the 2D prior and the ML-RQ on the
# train split's 2D only, then VideoMDM at demo size (teacher from this ML-RQ, the anchored run of `make videomdm`),
# each lifting the test split beside zero depth. docs/real-data.md holds the table and the runs behind it.
REAL ?= ../shared/data/bandai2
REAL_OUT ?= real
# then MVLift (stage 1 on the same 2D; stage 2 on MVLIFT_CLIPS test clips, beside the ML-RQ on the same clips)
# (every 11th test clip: Bandai-2's test split is sorted by action, so the 50 span all its actions)
REAL_MV_EVAL = --data $(REAL_OUT)/real2d --split test --stride 11 --limit $(MVLIFT_CLIPS)
# text-to-motion on the real clips' captions (from their action and style labels): make demo's recipe on REAL's 2D,
# reusing `make real`'s 2D, prior and ML-RQ where they exist (prompts under 40 characters: the file stems keep 40).
# docs/methods/free3d.md holds its figures.
REAL_PROMPTS := a_person_walks_and_turns_left_normally a_person_waves_the_right_hand_normally \
	a_person_runs_forward_as_if_exhausted
REAL_CONFIG ?= small

.PHONY: test test-fast install cuda-check bench demo demo-detector mvlift mvlift-coco compare real real-t2m videomdm clean help

help:
	@echo "make test        set up .venv if needed, build fastmotion (+ its C++ extension), run the test suite"
	@echo "make cuda-check  compile and link the CUDA kernels (no GPU needed) and load the library"
	@echo "make bench       fastmotion bench rvq (installs the [bench] extra: faiss-cpu)"
	@echo "make demo        learn 3D from 2D on the synthetic corpus: data, prior, ML-RQ, evaluation, GIF"
	@echo "make demo-detector  after make demo: the same from detector-like COCO-17 keypoints without a camera"
	@echo "make mvlift      after make demo: MVLift (stage 1, stage-2 lifting, ablations) beside ML-RQ, zero depth"
	@echo "make mvlift-coco after make demo: MVLift trained and lifting on COCO-17 keypoints as they are"
	@echo "make compare     after make demo: ML-RQ, VideoMDM, MVLift stage 2 and feed-forward on the same clips"
	@echo "make real        ML-RQ, VideoMDM and MVLift on real mocap's 2D (REAL=folder, default ../shared/data/bandai2)"
	@echo "make real-t2m    text-to-motion on real mocap's 2D and captions (REAL=folder, as make real)"
	@echo "make videomdm    after make demo: VideoMDM vs the MDM trained on the teacher's 3D (lifting, FID)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Installs torch only where none is installed, then builds fastmotion against it.
$(VENV)/.installed: $(PY) setup.py pyproject.toml $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.cu csrc/*/*.h)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install $(TORCH_SPEC)
	$(PIP) install -q "setuptools>=77" wheel "pybind11>=2.11" "ninja>=1.11"
	FASTMOTION_CUDA=$(FASTMOTION_CUDA) $(PIP) install --no-build-isolation -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(FM) data synth --out $(DEMO)/synth --num 2000 --seed 0
	$(FM) data render --from $(DEMO)/synth --out $(DEMO)/synth2d --views 1 --seed 0
	rm -rf $(DEMO)/prior $(DEMO)/mlrq $(DEMO)/lifted $(DEMO)/evaluator $(DEMO)/mask $(DEMO)/res $(DEMO)/samples
	$(FM) train prior --data $(DEMO)/synth2d --out $(DEMO)/prior --config $(DEMO_CONFIG)
	$(FM) train mlrq --data $(DEMO)/synth2d --prior $(DEMO)/prior/last.pt --out $(DEMO)/mlrq --config $(DEMO_CONFIG)
	$(FM) eval lift --checkpoint $(DEMO)/mlrq/last.pt --data $(DEMO)/synth2d --split test --json $(DEMO)/eval.json
	$(FM) lift --checkpoint $(DEMO)/mlrq/last.pt --data $(DEMO)/synth2d --split test --limit 3 --render \
		--out $(DEMO)/lifted
	$(FM) train evaluator --data $(DEMO)/synth2d --out $(DEMO)/evaluator --config $(DEMO_CONFIG)
	$(FM) train mask --data $(DEMO)/synth2d --mlrq $(DEMO)/mlrq/last.pt --out $(DEMO)/mask --config $(DEMO_CONFIG) \
		$(if $(MASK_STEPS),--steps $(MASK_STEPS))
	$(FM) train res --data $(DEMO)/synth2d --mlrq $(DEMO)/mlrq/last.pt --out $(DEMO)/res --config $(DEMO_CONFIG)
	$(FM) eval t2m --models $(DEMO) --evaluator $(DEMO)/evaluator/last.pt --data $(DEMO)/synth2d --split test \
		--repeats $(T2M_REPEATS) --json $(DEMO)/t2m.json
	$(FM) sample --models $(DEMO) --length 3s --out $(DEMO)/samples $(foreach p,$(DEMO_PROMPTS),--text "$(subst _, ,$(p))")
	$(FM) render $(foreach p,$(DEMO_PROMPTS),$(DEMO)/samples/$(p)_*_0.npy --title "$(subst _, ,$(p))") \
		--out $(DEMO)/t2m.gif
	@echo "demo: lifting figures in $(DEMO)/eval.json, animations (input 2D | lifted 3D | hidden truth) in $(DEMO)/lifted/"
	@echo "      text-to-motion figures in $(DEMO)/t2m.json, samples in $(DEMO)/samples/, three prompts in $(DEMO)/t2m.gif"

demo-detector: install
	$(FM) data render --from $(DEMO)/synth --out $(DET)/coco2d $(DETECTOR_2D)
	$(FM) data import --from $(DET)/coco2d --out $(DET)/det2d
	rm -rf $(DET)/prior $(DET)/mlrq
	$(FM) train prior --data $(DET)/det2d --out $(DET)/prior --config $(DEMO_CONFIG)
	$(FM) train mlrq --data $(DET)/det2d --prior $(DET)/prior/last.pt --out $(DET)/mlrq --config $(DEMO_CONFIG)
	$(FM) eval lift --checkpoint $(DET)/mlrq/last.pt --data $(DET)/det2d --split test --json $(DET)/eval.json
	$(FM) eval lift --checkpoint $(DEMO)/mlrq/last.pt --data $(DEMO)/synth2d --split test \
		--json $(DET)/eval-exact.json
	$(FM) data bvh --from $(CMU) --out $(DET)/cmu3d
	$(FM) data render --from $(DET)/cmu3d --out $(DET)/cmu-coco2d $(DETECTOR_2D)
	$(FM) data import --from $(DET)/cmu-coco2d --out $(DET)/cmu
	$(FM) eval lift --checkpoint $(DET)/mlrq/last.pt --data $(DET)/cmu --split test --json $(DET)/eval-cmu.json
	$(FM) eval table $(DET)/eval-exact.json $(DET)/eval.json $(DET)/eval-cmu.json \
		--name "ML-RQ, exact SMPL-22 2D, cameras" --name "ML-RQ, detector-like COCO-17, no camera" \
		--name "the same model, real CMU clips (detector-like)" | tee $(DET)/table.md

mvlift: install
	test -f $(DEMO)/synth2d/meta.json || ($(FM) data synth --out $(DEMO)/synth --num 2000 --seed 0 && \
		$(FM) data render --from $(DEMO)/synth --out $(DEMO)/synth2d --views 1 --seed 0)
	rm -rf $(MV)
	$(FM) train mvlift --data $(DEMO)/synth2d --out $(MV)/stage1 --config $(DEMO_CONFIG)
	$(FM) eval lift --model mvlift --checkpoint $(MV)/stage1/last.pt $(MV_EVAL) --json $(MV)/eval-stage2.json
	$(FM) eval lift --model mvlift --checkpoint $(MV)/stage1/last.pt $(MV_EVAL) --mvlift-mode stage1 \
		--json $(MV)/eval-stage1.json
	$(FM) eval lift --model mvlift --checkpoint $(MV)/stage1/last.pt $(MV_EVAL) --mvlift-mode sds3d \
		--json $(MV)/eval-sds3d.json
	$(FM) lift --model mvlift --checkpoint $(MV)/stage1/last.pt --data $(DEMO)/synth2d --split test --limit 3 \
		--render --out $(MV)/lifted
	test ! -f $(DEMO)/mlrq/last.pt || $(FM) eval lift --checkpoint $(DEMO)/mlrq/last.pt $(MV_EVAL) \
		--json $(MV)/eval-mlrq.json
	test ! -f $(VIDEOMDM_RUN) || $(FM) eval lift --model mdm --checkpoint $(VIDEOMDM_RUN) $(MV_EVAL) \
		--json $(MV)/eval-videomdm.json
	for protocol in ours mvlift; do $(FM) eval table --protocol $$protocol $(MV)/eval-stage2.json \
		$(MV)/eval-stage1.json $(MV)/eval-sds3d.json $$(ls $(MV)/eval-mlrq.json $(MV)/eval-videomdm.json 2>/dev/null); \
		done | tee $(MV)/table.md

mvlift-coco: install
	rm -rf $(MVC)
	$(FM) data render --from $(DEMO)/synth --out $(MVC)/coco --views 1 --seed 0 --layout coco17
	$(FM) data import --from $(MVC)/coco --out $(MVC)/coco2d --native
	$(FM) train mvlift --data $(MVC)/coco2d --out $(MVC)/stage1 --config $(DEMO_CONFIG)
	$(FM) eval lift --model mvlift --checkpoint $(MVC)/stage1/last.pt --data $(MVC)/coco2d --split test \
		--limit $(MVLIFT_CLIPS) --json $(MVC)/eval-stage2.json
	$(FM) lift --model mvlift --checkpoint $(MVC)/stage1/last.pt --data $(MVC)/coco2d --split test --limit 2 \
		--render --out $(MVC)/lifted
	for protocol in ours mvlift; do $(FM) eval table --protocol $$protocol $(MVC)/eval-stage2.json; done \
		| tee $(MVC)/table.md

compare: install
	test -f $(MV)/stage1/last.pt || $(FM) train mvlift --data $(DEMO)/synth2d --out $(MV)/stage1 --config $(DEMO_CONFIG)
	test -f $(VIDEOMDM_RUN) || $(MAKE) -C experiments $(abspath $(DEMO))/videomdm/videomdm.trained \
		DEMO=$(abspath $(DEMO)) VENV=$(abspath $(VENV)) DEMO_CONFIG=$(DEMO_CONFIG) VIDEOMDM_STEPS=$(VIDEOMDM_STEPS) \
		ANCHORED="$(ANCHORED)"
	$(FM) data mvlift --checkpoint $(MV)/stage1/last.pt --data $(DEMO)/synth2d --out $(CMP)/multiview \
		--mvlift-config $(DEMO_CONFIG) \
		--limit $(COMPARE_TRAIN_CLIPS) --render
	rm -rf $(CMP)/mvlift-mv
	$(FM) train mvlift-mv --data $(CMP)/multiview --out $(CMP)/mvlift-mv --config $(DEMO_CONFIG)
	$(FM) eval lift --checkpoint $(DEMO)/mlrq/last.pt $(COMPARE_EVAL) --json $(CMP)/eval-mlrq.json
	$(FM) eval lift --model mdm --checkpoint $(VIDEOMDM_RUN) $(COMPARE_EVAL) --json $(CMP)/eval-videomdm.json
	$(FM) eval lift --model mvlift --checkpoint $(MV)/stage1/last.pt $(COMPARE_EVAL) --json $(CMP)/eval-stage2.json
	$(FM) eval lift --model mvlift --checkpoint $(CMP)/mvlift-mv/last.pt $(COMPARE_EVAL) \
		--json $(CMP)/eval-feedforward.json
	$(FM) lift --model mvlift --checkpoint $(CMP)/mvlift-mv/last.pt --data $(DEMO)/synth2d --split test --limit 3 \
		--render --out $(CMP)/lifted
	for protocol in ours mvlift; do $(FM) eval table --protocol $$protocol \
		$(foreach r,$(COMPARE_RUNS),$(CMP)/$(r).json) $(COMPARE_NAMES); done | tee $(CMP)/table.md

real: install
	$(FM) data render --from $(REAL) --out $(REAL_OUT)/real2d --views 1 --seed 0
	rm -rf $(REAL_OUT)/prior $(REAL_OUT)/mlrq $(REAL_OUT)/videomdm $(REAL_OUT)/real2d/teacher
	$(FM) train prior --data $(REAL_OUT)/real2d --out $(REAL_OUT)/prior --config $(REAL_CONFIG)
	$(FM) train mlrq --data $(REAL_OUT)/real2d --prior $(REAL_OUT)/prior/last.pt --out $(REAL_OUT)/mlrq \
		--config $(REAL_CONFIG)
	$(FM) eval lift --checkpoint $(REAL_OUT)/mlrq/last.pt --data $(REAL_OUT)/real2d --split test \
		--json $(REAL_OUT)/eval-mlrq.json
	$(FM) data teacher --data $(REAL_OUT)/real2d --mlrq $(REAL_OUT)/mlrq/last.pt
	$(FM) train mdm --data $(REAL_OUT)/real2d --out $(REAL_OUT)/videomdm --config $(REAL_CONFIG) --steps $(VIDEOMDM_STEPS) \
		$(ANCHORED)
	$(FM) eval lift --model mdm --checkpoint $(REAL_OUT)/videomdm/last.pt --data $(REAL_OUT)/real2d --split test \
		--json $(REAL_OUT)/eval-videomdm.json
	$(FM) eval table $(REAL_OUT)/eval-mlrq.json $(REAL_OUT)/eval-videomdm.json --name ML-RQ \
		--name "VideoMDM (guided lifting)" | tee $(REAL_OUT)/table.md
	rm -rf $(REAL_OUT)/mvlift
	$(FM) train mvlift --data $(REAL_OUT)/real2d --out $(REAL_OUT)/mvlift --config $(REAL_CONFIG)
	$(FM) eval lift --model mvlift --checkpoint $(REAL_OUT)/mvlift/last.pt $(REAL_MV_EVAL) \
		--json $(REAL_OUT)/eval-mvlift.json
	$(FM) eval lift --checkpoint $(REAL_OUT)/mlrq/last.pt $(REAL_MV_EVAL) --json $(REAL_OUT)/eval-mlrq-mv.json
	for protocol in ours mvlift; do $(FM) eval table --protocol $$protocol $(REAL_OUT)/eval-mvlift.json \
		$(REAL_OUT)/eval-mlrq-mv.json --name "MVLift (stage 2)" --name ML-RQ; done | tee $(REAL_OUT)/table-mvlift.md

real-t2m: install
	test -f $(REAL_OUT)/real2d/meta.json || $(FM) data render --from $(REAL) --out $(REAL_OUT)/real2d --views 1 --seed 0
	test -f $(REAL_OUT)/prior/last.pt || $(FM) train prior --data $(REAL_OUT)/real2d --out $(REAL_OUT)/prior \
		--config $(REAL_CONFIG)
	test -f $(REAL_OUT)/mlrq/last.pt || $(FM) train mlrq --data $(REAL_OUT)/real2d --prior $(REAL_OUT)/prior/last.pt \
		--out $(REAL_OUT)/mlrq --config $(REAL_CONFIG)
	rm -rf $(REAL_OUT)/evaluator $(REAL_OUT)/mask $(REAL_OUT)/res $(REAL_OUT)/samples
	$(FM) train evaluator --data $(REAL_OUT)/real2d --out $(REAL_OUT)/evaluator --config $(REAL_CONFIG)
	$(FM) train mask --data $(REAL_OUT)/real2d --mlrq $(REAL_OUT)/mlrq/last.pt --out $(REAL_OUT)/mask --config $(REAL_CONFIG) \
		$(if $(MASK_STEPS),--steps $(MASK_STEPS))
	$(FM) train res --data $(REAL_OUT)/real2d --mlrq $(REAL_OUT)/mlrq/last.pt --out $(REAL_OUT)/res --config $(REAL_CONFIG)
	$(FM) eval t2m --models $(REAL_OUT) --evaluator $(REAL_OUT)/evaluator/last.pt --data $(REAL_OUT)/real2d \
		--split test --repeats $(T2M_REPEATS) --json $(REAL_OUT)/t2m.json
	$(FM) sample --models $(REAL_OUT) --length 3s --out $(REAL_OUT)/samples \
		$(foreach p,$(REAL_PROMPTS),--text "$(subst _, ,$(p))")
	$(FM) render $(foreach p,$(REAL_PROMPTS),$(REAL_OUT)/samples/$(p)_*_0.npy --title "$(subst _, ,$(p))") \
		--out $(REAL_OUT)/t2m.gif

videomdm: install
	$(MAKE) -C experiments videomdm DEMO=$(abspath $(DEMO)) VENV=$(abspath $(VENV)) DEMO_CONFIG=$(DEMO_CONFIG) \
		VIDEOMDM_STEPS=$(VIDEOMDM_STEPS) ANCHORED="$(ANCHORED)"

cuda-check: install
	TORCH_CUDA_ARCH_LIST="$(TORCH_CUDA_ARCH_LIST)" $(PY) tools/cuda_check.py

bench: install
	$(PIP) install -q --no-build-isolation -e ".[bench]"
	$(VENV)/bin/fastmotion bench rvq --json bench/rvq-$(shell hostname).json

clean:
	rm -rf build fastmotion/_C*.so $(VENV)/.installed

import Type from 'typebox';

/** Detector runtime settings; part of the device and CLI configuration. */
export const DetectorSettingsSchema = Type.Object(
  {
    /** model name in the cache, or a model directory */
    model: Type.String({ default: 'nanodet' }),
    /** execution providers in order of preference; CPU is always the last resort */
    executionProviders: Type.Array(Type.String(), { default: ['cpu'] }),
    /**
     * detector sessions of the model, each on its own thread, running inference calls side by
     * side (pipelines: DetectorPool)
     */
    sessions: Type.Integer({ minimum: 1, maximum: 16, default: 2 }),
    /** threads per operator and session; 0 gives each session an equal share of the cores */
    intraOpThreads: Type.Integer({ minimum: 0, default: 0 }),
    interOpThreads: Type.Integer({ minimum: 1, default: 1 }),
    /**
     * scheduling priority (nice, −20 … 19; Linux, per thread) of the detector threads. Below the
     * rest of the box's 0, inference — which sets every frame's latency — runs first when the
     * cores are contended, and decoding and the event loop take the gaps. A box that may not raise
     * priorities (neither root nor CAP_SYS_NICE) says so in its log and runs them at 0.
     */
    threadNice: Type.Integer({ minimum: -20, maximum: 19, default: -10 }),
    /** largest number of frames per inference call */
    maxBatch: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
    /**
     * share of one core that shadow validation of a candidate model (OTA updates) may take on the
     * box, both models together, on detector threads at the lowest priority (default 0.25)
     */
    shadowCpuShare: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    /** overrides of the descriptor's defaults */
    scoreThreshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    iouThreshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    maxDetections: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

export type DetectorSettings = Type.Static<typeof DetectorSettingsSchema>;

export const DEFAULT_DETECTOR_SETTINGS: DetectorSettings = {
  model: 'nanodet',
  executionProviders: ['cpu'],
  sessions: 2,
  intraOpThreads: 0,
  interOpThreads: 1,
  threadNice: -10,
  maxBatch: 4,
};

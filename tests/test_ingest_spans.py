"""Tests for choosing a video's clips: scene cuts and runs of usable frames."""

from face_videos import astronaut_pose, canvas, lfw_face, place_astronaut

from jaxtalk.data.ingest_spans import DRIFT, SceneCuts, Span, split_spans


def test_a_cut_is_a_new_scene_and_head_motion_is_not():
  cuts = SceneCuts()
  moving = [
    place_astronaut(frame, astronaut_pose(0.8 - 0.01 * t, 3 * t, (90 + 3 * t, 88)))
    for t, frame in enumerate(canvas(176, 224, 10))
  ]
  other = canvas(176, 224, 1)[0]
  other[40:140, 60:160] = lfw_face(100)
  starts = [cuts.starts_scene(frame) for frame in [*moving, other, other]]
  assert starts == [True] + [False] * 9 + [True, False]


def test_usable_runs_become_clips_of_at_most_the_maximum_length():
  problems = [None] * 30 + ["no face found"] * 5 + [None] * 12
  spans = split_spans(problems, [t == 0 for t in range(47)], min_frames=5, max_frames=10)
  assert spans == [
    Span(0, 10),
    Span(10, 20),
    Span(20, 30),
    Span(30, 35, "no face found"),
    Span(35, 45),
    Span(45, 47, "tail shorter than 0.2 s"),
  ]


def test_clips_end_at_cuts():
  starts = [t in (0, 8) for t in range(20)]
  spans = split_spans([None] * 20, starts, min_frames=5, max_frames=100)
  assert spans == [Span(0, 8), Span(8, 20)]
  short = split_spans([None] * 20, [t in (0, 3) for t in range(20)], min_frames=5, max_frames=100)
  assert short == [Span(0, 3, "usable for only 0.1 s, under 0.2 s"), Span(3, 20)]


def test_a_glimpse_of_the_face_between_drops_joins_them():
  problems = ["face leaves the frame"] * 4 + [None] + ["face leaves the frame"] * 4 + [None] * 10
  spans = split_spans(problems, [t == 0 for t in range(19)], min_frames=5, max_frames=100)
  assert spans == [Span(0, 9, "face leaves the frame"), Span(9, 19)]
  different = ["face leaves the frame"] * 4 + [None] + ["no face found"] * 4
  assert split_spans(different, [True] + [False] * 8, 5, 100) == [
    Span(0, 5, "face leaves the frame"),
    Span(5, 9, "no face found"),
  ]


def test_reasons_give_the_minimum_in_seconds():
  spans = split_spans([None] * 30, [True] + [False] * 29, min_frames=25, max_frames=26)
  assert spans == [Span(0, 26), Span(26, 30, "tail shorter than 1 s")]


def test_a_face_leaving_the_still_crop_starts_the_next_clip():
  # The head holds still at one place for frames 0-11 and at another from 12 on.
  places = [0] * 12 + [1] * 20

  def holds(start, end):
    return len(set(places[start:end])) == 1

  spans = split_spans([None] * 32, [True] + [False] * 31, 5, 100, holds)
  assert spans == [Span(0, 12), Span(12, 32, split=DRIFT)]
  # Where a place is held too briefly for a clip, its frames are dropped with the reason.
  places = [0] * 12 + [1] * 3 + [2] * 2 + [3] * 10
  spans = split_spans([None] * 27, [True] + [False] * 26, 5, 100, holds)
  assert spans == [Span(0, 12), Span(12, 17, DRIFT), Span(17, 27)]

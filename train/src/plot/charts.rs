//! The charts, as SVG (plotters' SVG backend): loss curves and the logit
//! scale, a similarity heatmap, and a scatter plot of the shared space.

use crate::run::StepRecord;
use ndarray::ArrayRef2;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub(super) fn drawn<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    // drawing into a String cannot fail; an error here is a bug in the chart
    r.expect("drawing an SVG into a string")
}

// ANCHOR: loss_svg
/// The total, contrastive and captioning losses against the step (log
/// scale), and below them the logit scale `exp(logit_scale)` (linear):
/// 640×480.
pub fn loss_svg(steps: &[StepRecord]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 480)).into_drawing_area();
        drawn(root.fill(&WHITE));
        let (upper, lower) = root.split_vertically(320);
        loss_panel(&upper, steps);
        scale_panel(&lower, steps);
        drawn(root.present());
    }
    svg
}
// ANCHOR_END: loss_svg

fn loss_panel(area: &DrawingArea<SVGBackend, Shift>, steps: &[StepRecord]) {
    let last = steps.last().map_or(1, |r| r.step + 1);
    type Series = (&'static str, RGBColor, fn(&StepRecord) -> f32);
    let series: [Series; 3] = [
        ("total", BLACK, |r| r.loss),
        ("contrastive", BLUE, |r| r.contrastive),
        ("caption", RED, |r| r.caption),
    ];
    let values = || {
        steps
            .iter()
            .flat_map(|r| series.iter().map(move |(_, _, f)| f(r)))
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let top = values().fold(1.0f32, f32::max) * 1.5;
    let bottom = values().fold(top, f32::min).min(0.5) * 0.7;
    let mut chart = drawn(
        ChartBuilder::on(area)
            .caption("training loss (log scale)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..last, (bottom..top).log_scale()),
    );
    drawn(
        chart
            .configure_mesh()
            .y_desc("loss")
            .y_label_formatter(&|v| tick_label(*v))
            .draw(),
    );
    for (name, colour, f) in series {
        drawn(
            chart.draw_series(LineSeries::new(
                steps
                    .iter()
                    .map(|r| (r.step, f(r)))
                    .filter(|(_, v)| v.is_finite() && *v > 0.0),
                colour,
            )),
        )
        .label(name)
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
    }
    drawn(
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw(),
    );
}

/// A tick of a log axis with two significant digits, so small values do
/// not all read `0.00`: 12, 1.5, 0.15, 0.0015.
pub fn tick_label(v: f32) -> String {
    if !v.is_finite() || v <= 0.0 {
        return format!("{v}");
    }
    let decimals = (1 - v.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

fn scale_panel(area: &DrawingArea<SVGBackend, Shift>, steps: &[StepRecord]) {
    let last = steps.last().map_or(1, |r| r.step + 1);
    let finite = || {
        steps
            .iter()
            .map(|r| r.logit_scale)
            .filter(|v| v.is_finite())
    };
    let top = finite().fold(1.0f32, f32::max) * 1.1;
    let bottom = finite().fold(top, f32::min).min(top * 0.5) * 0.9;
    let mut chart = drawn(
        ChartBuilder::on(area)
            .caption("scale s = exp(logit_scale) = 1/τ", ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0..last, bottom..top),
    );
    drawn(chart.configure_mesh().x_desc("step").y_desc("s").draw());
    drawn(
        chart.draw_series(LineSeries::new(
            steps
                .iter()
                .map(|r| (r.step, r.logit_scale))
                .filter(|(_, v)| v.is_finite()),
            GREEN.mix(0.9).stroke_width(2),
        )),
    );
}

/// A diverging colour for `v ∈ [−1, 1]`: blue, white, red.
pub fn diverging(v: f32) -> RGBColor {
    let v = if v.is_finite() {
        v.clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = |a: f32| (255.0 * (1.0 - a.abs())).round() as u8;
    if v >= 0.0 {
        RGBColor(255, fade(v), fade(v))
    } else {
        RGBColor(fade(v), fade(v), 255)
    }
}

// ANCHOR: heatmap
/// A square matrix of cosine similarities as a heatmap: row `i` (image `i`,
/// top to bottom) against column `j` (caption `j`), blue −1, white 0, red
/// +1, with a colour bar. 720×640.
///
/// # Panics
/// If `matrix` is not square or `labels` does not name each row.
#[track_caller]
pub fn heatmap_svg(matrix: &ArrayRef2<f32>, labels: &[String], title: &str) -> String {
    heatmap_svg_axis(matrix, labels, title, "image")
}
// ANCHOR_END: heatmap

/// [`heatmap_svg`] with another name for what the rows are (`"token"`).
///
/// # Panics
/// If `matrix` is not square or `labels` does not name each row.
#[track_caller]
pub fn heatmap_svg_axis(
    matrix: &ArrayRef2<f32>,
    labels: &[String],
    title: &str,
    rows: &str,
) -> String {
    let n = matrix.nrows();
    assert!(
        matrix.ncols() == n && labels.len() == n,
        "heatmap: a {:?} matrix with {} labels",
        matrix.dim(),
        labels.len()
    );
    let n = n as i32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 640)).into_drawing_area();
        drawn(root.fill(&WHITE));
        let (left, right) = root.split_horizontally(640);
        let mut chart = drawn(
            ChartBuilder::on(&left)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(110)
                .y_label_area_size(130)
                .build_cartesian_2d((0..n).into_segmented(), (0..n).into_segmented()),
        );
        // row labels top to bottom: segment `n − 1` is the first row
        let row_name = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) if (0..n).contains(i) => labels[(n - 1 - i) as usize].clone(),
            _ => String::new(),
        };
        drawn(
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(n as usize)
                .y_labels(n as usize)
                .x_label_formatter(&|_| String::new())
                .y_label_formatter(&row_name)
                .y_label_style(("sans-serif", 11))
                .y_desc(rows)
                .draw(),
        );
        let exact = SegmentValue::Exact;
        drawn(chart.draw_series(matrix.indexed_iter().map(|((i, j), &v)| {
            let (row, col) = (n - 1 - i as i32, j as i32); // row 0 at the top
            Rectangle::new(
                [(exact(col), exact(row)), (exact(col + 1), exact(row + 1))],
                diverging(v).filled(),
            )
        })));
        // the captions below the columns, written downwards (drawn here, after
        // the cells, with the text starting at the axis)
        let style = TextStyle::from(
            ("sans-serif", 11)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .pos(Pos::new(HPos::Left, VPos::Center));
        for (j, label) in labels.iter().enumerate() {
            let (x, y) =
                chart.backend_coord(&(SegmentValue::CenterOf(j as i32), SegmentValue::Exact(0)));
            drawn(left.draw(&Text::new(label.clone(), (x, y + 8), style.clone())));
        }
        colour_bar(&right);
        drawn(root.present());
    }
    svg
}

fn colour_bar(area: &DrawingArea<SVGBackend, Shift>) {
    // in the area's pixels: a bar 20 px wide from y = 40 (+1) to y = 520 (−1)
    let (top, bottom) = (40, 520);
    let y = |v: f32| top + ((1.0 - v) / 2.0 * (bottom - top) as f32).round() as i32;
    for k in 0..100 {
        let v = 1.0 - 2.0 * k as f32 / 100.0;
        drawn(area.draw(&Rectangle::new(
            [(10, y(v)), (30, y(v - 0.02))],
            diverging(v - 0.01).filled(),
        )));
    }
    for v in [-1.0f32, -0.5, 0.0, 0.5, 1.0] {
        drawn(area.draw(&PathElement::new([(30, y(v)), (34, y(v))], BLACK)));
        drawn(area.draw(&Text::new(
            format!("{v:+.1}"),
            (36, y(v) - 5),
            ("sans-serif", 12),
        )));
    }
}

/// One point of [`scatter_svg`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPoint {
    pub x: f32,
    pub y: f32,
    /// Index into the scatter's groups: the colour and the legend entry.
    pub group: usize,
    /// A caption (triangle) rather than an image (dot).
    pub caption: bool,
    /// Ringed in black.
    pub marked: bool,
    /// Written beside the point.
    pub label: Option<String>,
}

/// The colours of [`scatter_svg`]'s groups, in order.
pub const GROUP_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(214, 39, 40),
    RGBColor(140, 86, 75),
];

// ANCHOR: scatter
/// Points in two dimensions: coloured by group, images as dots, captions as
/// triangles, marked points ringed, `links` (pairs of point indices) as
/// faint lines. 720×560.
///
/// # Panics
/// If a point's group has no name or colour, or a link names a missing point.
#[track_caller]
pub fn scatter_svg(
    points: &[ScatterPoint],
    groups: &[&str],
    links: &[(usize, usize)],
    title: &str,
    axes: (&str, &str),
    marked: &str,
) -> String {
    assert!(
        groups.len() <= GROUP_COLOURS.len(),
        "scatter: too many groups"
    );
    let range = |f: fn(&ScatterPoint) -> f32| {
        let (lo, hi) = points
            .iter()
            .map(f)
            .filter(|v| v.is_finite())
            .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi {
            (-1.0, 1.0)
        } else {
            let pad = ((hi - lo) * 0.08).max(1e-3);
            (lo - pad, hi + pad)
        }
    };
    let (x0, x1) = range(|p| p.x);
    let (y0, y1) = range(|p| p.y);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 560)).into_drawing_area();
        drawn(root.fill(&WHITE));
        let mut chart = drawn(
            ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 16))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(x0..x1, y0..y1),
        );
        drawn(
            chart
                .configure_mesh()
                .x_desc(axes.0)
                .y_desc(axes.1)
                .light_line_style(WHITE)
                .draw(),
        );
        drawn(chart.draw_series(links.iter().map(|&(a, b)| {
            let (a, b) = (&points[a], &points[b]);
            PathElement::new([(a.x, a.y), (b.x, b.y)], BLACK.mix(0.12))
        })));
        for (g, &name) in groups.iter().enumerate() {
            let colour = GROUP_COLOURS[g];
            let of = |caption: bool| {
                points
                    .iter()
                    .filter(move |p| p.group == g && p.caption == caption)
            };
            drawn(chart.draw_series(
                of(false).map(move |p| Circle::new((p.x, p.y), 3, colour.mix(0.8).filled())),
            ))
            .label(format!("{name} (image)"))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, colour.filled()));
            drawn(chart.draw_series(
                of(true).map(move |p| TriangleMarker::new((p.x, p.y), 4, colour.mix(0.8).filled())),
            ))
            .label(format!("{name} (caption)"))
            .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 4, colour.filled()));
        }
        drawn(
            chart.draw_series(
                points
                    .iter()
                    .filter(|p| p.marked)
                    .map(|p| Circle::new((p.x, p.y), 6, BLACK.stroke_width(1))),
            ),
        )
        .label(marked)
        .legend(|(x, y)| Circle::new((x + 10, y), 6, BLACK.stroke_width(1)));
        drawn(chart.draw_series(points.iter().filter_map(|p| {
            p.label
                .as_ref()
                .map(|text| Text::new(text.clone(), (p.x, p.y), ("sans-serif", 11)))
        })));
        drawn(
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw(),
        );
        drawn(root.present());
    }
    svg
}
// ANCHOR_END: scatter

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn record(step: usize, loss: f32) -> StepRecord {
        StepRecord {
            step,
            loss,
            contrastive: loss / 3.0,
            caption: loss / 2.0,
            grad_norm: 1.0,
            lr: 1e-3,
            logit_scale: 14.0 + step as f32,
        }
    }

    #[test]
    fn log_ticks_keep_two_significant_digits() {
        assert_eq!(tick_label(12.0), "12");
        assert_eq!(tick_label(1.5), "1.5");
        assert_eq!(tick_label(0.15), "0.15");
        assert_eq!(tick_label(0.0015), "0.0015");
        assert_eq!(tick_label(0.002), "0.0020");
    }

    #[test]
    fn the_loss_chart_has_both_panels_and_survives_odd_values() {
        let steps: Vec<_> = (0..20).map(|s| record(s, 5.0 / (1.0 + s as f32))).collect();
        let svg = loss_svg(&steps);
        assert!(svg.starts_with("<svg") && svg.contains("contrastive"));
        assert!(svg.contains("log scale") && svg.contains("exp(logit_scale)"));
        // a NaN, a zero (no logarithm) and no steps at all still draw
        let mut odd = steps.clone();
        odd[3].loss = f32::NAN;
        odd[4].caption = 0.0;
        assert!(loss_svg(&odd).contains("</svg>"));
        assert!(loss_svg(&[]).contains("</svg>"));
    }

    #[test]
    fn diverging_colours_run_from_blue_through_white_to_red() {
        assert_eq!(diverging(-1.0), RGBColor(0, 0, 255));
        assert_eq!(diverging(0.0), RGBColor(255, 255, 255));
        assert_eq!(diverging(1.0), RGBColor(255, 0, 0));
        assert_eq!(diverging(7.0), diverging(1.0));
        assert_eq!(diverging(f32::NAN), diverging(0.0));
    }

    #[test]
    fn the_heatmap_has_one_cell_per_entry_and_every_label() {
        let m = array![[0.9f32, -0.2, 0.1], [0.0, 0.8, -0.5], [0.3, 0.2, 1.0]];
        let labels: Vec<String> = ["red circle", "blue square", "green cross"]
            .map(String::from)
            .to_vec();
        let svg = heatmap_svg(&m, &labels, "similarity");
        for l in &labels {
            assert!(svg.matches(l.as_str()).count() >= 2, "{l} on both axes");
        }
        // the strongest cell's red appears
        let RGBColor(r, g, b) = diverging(1.0);
        assert!(
            svg.to_uppercase()
                .contains(&format!("#{r:02X}{g:02X}{b:02X}"))
        );
        assert!(svg.matches("<rect").count() >= 9 + 100);
    }

    #[test]
    fn the_scatter_draws_every_point_and_the_legend() {
        let points: Vec<ScatterPoint> = (0..6)
            .map(|i| ScatterPoint {
                x: i as f32,
                y: (i * i) as f32,
                group: i % 2,
                caption: i % 3 == 0,
                marked: i == 5,
                label: (i == 2).then(|| "two".to_string()),
            })
            .collect();
        let svg = scatter_svg(
            &points,
            &["circle", "square"],
            &[(0, 1)],
            "space",
            ("a", "b"),
            "held out",
        );
        for text in [
            "circle (image)",
            "square (caption)",
            "held out",
            "space",
            "two",
        ] {
            assert!(svg.contains(text), "{text}");
        }
    }
}

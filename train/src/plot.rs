//! The loss curve of a run as an SVG (plotters' SVG backend).

use crate::run::StepRecord;
use plotters::prelude::*;

/// The total, contrastive and captioning losses against the step: a line
/// chart, 640×360.
pub fn loss_svg(steps: &[StepRecord]) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string");
        let last = steps.last().map_or(1, |r| r.step + 1);
        let top = steps
            .iter()
            .map(|r| r.loss.max(r.contrastive).max(r.caption))
            .filter(|v| v.is_finite())
            .fold(1.0f32, f32::max);
        let mut chart = ChartBuilder::on(&root)
            .caption("training loss", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(45)
            .build_cartesian_2d(0..last, 0f32..top * 1.05)
            .expect("a chart");
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .expect("a mesh");
        type Series = (&'static str, RGBColor, fn(&StepRecord) -> f32);
        let series: [Series; 3] = [
            ("total", BLACK, |r| r.loss),
            ("contrastive", BLUE, |r| r.contrastive),
            ("caption", RED, |r| r.caption),
        ];
        for (name, colour, f) in series {
            chart
                .draw_series(LineSeries::new(
                    steps.iter().map(|r| (r.step, f(r))),
                    colour,
                ))
                .expect("a line")
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .expect("a legend");
        root.present().expect("an svg");
    }
    svg
}

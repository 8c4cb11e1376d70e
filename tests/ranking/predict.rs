//! `/predict`'s ranking form: the context once and the candidates as columns or rows, with
//! raw fields, and its mistakes refused naming them.

use super::*;

/// A `/predict` answer's `top_k`: indices and scores.
type TopK = (Vec<i64>, Vec<Value>);

/// `/predict`'s `click_prob` rows, flattened, and its `top_k` if any.
fn predicted(answer: &(u16, Value)) -> (Vec<Value>, Option<TopK>) {
    let (status, body) = answer;
    assert_eq!(*status, 200, "{body}");
    let rows = flatten(&body["outputs"]["click_prob"]);
    let top_k = body.get("top_k").map(|t| {
        let indices = flatten(&t["indices"])
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        (indices, flatten(&t["scores"]))
    });
    (rows, top_k)
}

#[test]
fn predict_takes_context_once_and_candidates_as_columns_or_rows() {
    let repo = ScratchRepo::new("rank-predict");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let r = Ranking::new(7, 5, 8);
    let mask = vec![1.0; 5];
    let repeated = json!({"model": "din", "inputs": {
        "target_item": r.targets,
        "hist_items": vec![r.history.clone(); 8],
        "hist_mask": vec![mask.clone(); 8],
    }});
    let (want, none) = predicted(&server.post_json("/predict", &repeated));
    assert!(none.is_none(), "no top_k key without top_k");
    let context = json!({"hist_items": r.history, "hist_mask": mask});
    let columns = json!({"model": "din", "context": context,
        "candidates": {"target_item": r.targets}, "top_k": 3});
    let rows: Vec<Value> = r
        .targets
        .iter()
        .map(|t| json!({"target_item": t}))
        .collect();
    let rows = json!({"model": "din", "context": context, "candidates": rows, "top_k": 3});
    for body in [columns, rows] {
        let (got, top_k) = predicted(&server.post_json("/predict", &body));
        assert_eq!(got, want, "{body}");
        let (indices, scores) = top_k.expect("top_k");
        assert_eq!(indices, sorted_indices(&want)[..3]);
        let best: Vec<Value> = indices.iter().map(|&i| want[i as usize].clone()).collect();
        assert_eq!(scores, best);
    }
    // Without top_k: the outputs alone.
    let plain =
        json!({"model": "din", "context": context, "candidates": {"target_item": r.targets}});
    let (got, top_k) = predicted(&server.post_json("/predict", &plain));
    assert_eq!((got, top_k), (want, None));
}

#[test]
fn predict_ranks_raw_fields_with_the_user_fields_in_the_context() {
    let repo = ScratchRepo::new("rank-predict-fields");
    repo.add("widedeep_ctr", "ctr", 1, FIELDS);
    let server = TestServer::start(&repo.path);
    let user =
        json!({"user": "u1", "c1": "a", "c2": "b", "c3": 3, "c4": "d", "c5": "e", "c6": "f"});
    let items = [(40.0, 0.1, 1.0), (55.5, 0.2, 0.0), (61.0, 0.3, 1.0)];
    let rows: Vec<Value> = items
        .iter()
        .map(|(p, d2, d3)| json!({"price": p, "d2": d2, "d3": d3}))
        .collect();
    let repeated: Vec<Value> = rows
        .iter()
        .map(|row| {
            let mut all = user.as_object().unwrap().clone();
            all.extend(row.as_object().unwrap().clone());
            Value::Object(all)
        })
        .collect();
    let want = server.post_json("/predict", &json!({"model": "ctr", "instances": repeated}));
    let got = server.post_json(
        "/predict",
        &json!({"model": "ctr", "context": user, "candidates": rows, "top_k": 10}),
    );
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["outputs"], want.1["outputs"]);
    assert_eq!(
        got.1["top_k"]["indices"].as_array().unwrap().len(),
        3,
        "k over N gives N"
    );
}

#[test]
fn predict_ranking_mistakes_are_refused_naming_them() {
    let repo = ScratchRepo::new("rank-predict-bad");
    repo.add("din_ctr", "din", 1, &din_config("max_batch_size = 64"));
    let server = TestServer::start(&repo.path);
    let context = json!({"hist_items": [1, 2], "hist_mask": [1.0, 1.0]});
    let candidates = json!({"target_item": [5, 6, 7]});
    for (body, needles) in [
        (
            json!({"model": "din", "context": {"hist_items": [1, 2], "hist_mask": [1.0, 1.0], "target_item": 3}, "candidates": candidates}),
            &["'target_item'", "both"][..],
        ),
        (
            json!({"model": "din", "context": {"target_item": 3}, "candidates": {"hist_items": [[1]], "hist_mask": [[1.0]]}}),
            &[
                "context name 'target_item'",
                "not declared broadcast",
                "'hist_items'",
            ][..],
        ),
        (
            json!({"model": "din", "context": {"user": 3}, "candidates": candidates}),
            &["unknown context name 'user'", "'hist_mask'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": {"item": [5, 6]}}),
            &["'item'"][..],
        ),
        (
            json!({"model": "din", "context": {"hist_items": [1, 2]}, "candidates": candidates}),
            &["missing input 'hist_mask'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": candidates, "top_k": 0}),
            &["'top_k'", "at least 1", "got 0"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": candidates, "top_k": 2, "rank_by": "p"}),
            &["rank_by", "'p'", "'click_prob'"][..],
        ),
        (
            json!({"model": "din", "context": context, "candidates": [{"target_item": 1}, {}]}),
            &["candidate 1", "'target_item'"][..],
        ),
    ] {
        expect_error(server.post_json("/predict", &body), 400, needles);
    }
}
